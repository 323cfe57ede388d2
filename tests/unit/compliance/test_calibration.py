"""Calibration: fitting per-question scale and biases, storing them per model."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

from govern.compliance.calibration import Calibration, fit, pool_id
from govern.errors import ConfigError


def _biased_examples(n: int, seed: int = 1) -> list[tuple[dict[str, float], str]]:
    """A scorer that favours 'yes' by 2 nats whatever the truth, and is otherwise informative."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        gold = rng.choice(["yes", "no"])
        signal = 1.0 if gold == "yes" else -1.0
        yes = signal + 2.0 + rng.gauss(0, 0.5)
        out.append(({"yes": yes, "no": 0.0}, gold))
    return out


def test_fitting_removes_a_constant_label_bias() -> None:
    train = _biased_examples(200)
    raw_right = sum((s["yes"] > s["no"]) == (g == "yes") for s, g in train) / len(train)
    fitted = fit(["yes", "no"], train)
    right = (
        sum(
            (fitted.probabilities(s)["yes"] > 0.5) == (g == "yes")
            for s, g in _biased_examples(200, 2)
        )
        / 200
    )
    assert raw_right < 0.6 and right > 0.9
    assert fitted.bias[0] < fitted.bias[1]  # 'yes' pushed down


def test_few_examples_keep_the_fit_near_identity() -> None:
    fitted = fit(["yes", "no"], [({"yes": -1.0, "no": -2.0}, "no")])
    assert 0.5 < fitted.scale < 1.5 and all(abs(b) < 1.0 for b in fitted.bias)


def test_calibration_round_trips_through_its_file(tmp_path: Path) -> None:
    fitted = fit(["a", "b", "c"], [({"a": -1, "b": -2, "c": -3}, "b")] * 5)
    cal = Calibration({"local:m": {"fact:x": fitted}})
    path = tmp_path / "calibration.json"
    cal.save(path, {"local:m": {"cases": 5}})
    again = Calibration.load(path)
    got = again.get("local:m", "fact:x", ["a", "b", "c"])
    assert got is not None and got.labels == ("a", "b", "c") and got.n == 5
    probs, calibrated = again.probabilities("local:m", "fact:x", {"a": -1, "b": -2, "c": -3})
    assert calibrated and math.isclose(sum(probs.values()), 1.0)


def test_other_models_and_other_label_sets_are_uncalibrated() -> None:
    cal = Calibration({"local:m": {"fact:x": fit(["a", "b"], [({"a": 0, "b": 0}, "a")] * 4)}})
    assert cal.probabilities("openai:big", "fact:x", {"a": 0.0, "b": -1.0})[1] is False
    assert cal.get("local:m", "fact:x", ["a", "b", "c"]) is None


def test_a_missing_file_is_empty_and_a_corrupt_one_is_an_error(tmp_path: Path) -> None:
    assert Calibration.load(tmp_path / "none.json").models == {}
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": {"m": {"questions": {"q": {"labels": 3}}}}}')
    with pytest.raises(ConfigError, match=r"bad\.json"):
        Calibration.load(bad)


def test_the_shipped_calibration_file_loads() -> None:
    from govern.resources import policies_dir

    Calibration.load(policies_dir() / "rules" / "calibration.json")


def test_a_question_without_its_own_fit_borrows_the_pool_of_its_kind() -> None:
    pooled = fit(["yes", "no", "unknown"], [({"yes": 0, "no": 0, "unknown": 0}, "no")] * 4)
    cal = Calibration({"m": {pool_id("fact:web_scraped", ["yes", "no", "unknown"]): pooled}})
    got = cal.get("m", "fact:bias_examined", ["yes", "no", "unknown"])
    assert got is pooled
    assert cal.get("m", "rule:ccpa-opt-out", ["yes", "no"]) is None  # another kind


def test_calibrating_on_the_cases_fits_pools_and_reuses_cached_scores(tmp_path: Path) -> None:
    from collections.abc import Sequence

    from govern.compliance import Assessor, load_library
    from govern.compliance.calibrate import calibrate
    from govern.compliance.cases import default_cases_dir, load_cases
    from govern.compliance.model.base import LanguageModel
    from govern.resources import policies_dir

    class Constant(LanguageModel):
        name = "constant"
        calls = 0

        def ready(self) -> bool:
            return True

        def label_logprobs(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
            Constant.calls += 1
            return {label: -1.0 - i for i, label in enumerate(labels)}

    library = load_library(policies_dir() / "rules")
    cases = load_cases(default_cases_dir(), library)
    assessor = Assessor(library, Constant, Calibration())
    scores = tmp_path / "cache" / "scores.json"
    result = calibrate(assessor, cases, "constant", score_cache=scores)
    fitted = result.calibration.models["constant"]
    assert pool_id("rule:x", ["yes", "no"]) in fitted
    assert result.skipped  # questions with too few cases of their own
    calls = Constant.calls
    assert calls > 0 and scores.exists()
    again = calibrate(assessor, cases, "constant", score_cache=scores)
    assert Constant.calls == calls  # every score came from the cache
    assert again.calibration.models["constant"].keys() == fitted.keys()


def test_a_flat_fit_cannot_reach_a_high_threshold_and_a_sharp_one_can() -> None:
    from govern.compliance.calibration import Fitted

    flat = Fitted(("yes", "no", "unknown"), 0.001, (-0.1, -0.8, 0.9), 40)
    assert not flat.can_reach("yes", 0.8) and not flat.can_reach("unknown", 0.8)
    sharp = Fitted(("yes", "no", "unknown"), 1.0, (0.0, 0.0, 0.0), 40)
    assert sharp.can_reach("yes", 0.8) and sharp.can_reach("no", 0.99)
