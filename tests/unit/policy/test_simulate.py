"""Simulating a policy edit over the demo: the changes a steward would see before saving."""

from __future__ import annotations

from govern.demo import load_demo
from govern.gateway import Gateway
from govern.policy.files import read_rules
from govern.resources import policies_dir


def _demo_rules() -> list[list[str]]:
    return [list(r) for r in read_rules(policies_dir() / "demo.csv")]


def test_dropping_a_rule_and_unmasking_a_column_show_as_changes(sqlite_gateway: Gateway) -> None:
    load_demo(sqlite_gateway, scale=0.02)
    rules = _demo_rules()
    without_chat = [r for r in rules if not (r[0] == "p" and r[2] == "chat_logs")]
    version, changes = sqlite_gateway.queries.simulate_policy(None, without_chat, None)
    assert version == 1
    lost = [c for c in changes if c.dataset == "chat_logs" and c.principal == "demo-trainer"]
    assert [(c.purpose, c.before, c.after) for c in lost] == [("training", "allow", "deny")]
    assert lost[0].rows_lost == lost[0].rows_before > 0 and lost[0].rows_after == 0

    unmasked = [r for r in rules if not (r[0] == "p2" and r[3] == "pii.email")]
    _, changes = sqlite_gateway.queries.simulate_policy(None, unmasked, None)
    email = [c for c in changes if "email" in c.columns_unmasked]
    assert {(c.principal, c.dataset, c.purpose) for c in email} == {
        ("demo-trainer", "chat_logs", "training")
    }
    assert all(c.rows_gained == c.rows_lost == 0 for c in email)


def test_the_set_in_force_simulated_against_itself_changes_nothing(
    sqlite_gateway: Gateway,
) -> None:
    load_demo(sqlite_gateway, scale=0.02)
    assert sqlite_gateway.queries.simulate_policy(None, _demo_rules(), None)[1] == []
