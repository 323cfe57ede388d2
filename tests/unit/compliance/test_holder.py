"""The model holder's states, and what the pipeline makes of each, with real backends: none
configured, the local model converting its GGUF in a child process, and the local model
reading its converted copy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from govern.compliance import Assessor, ModelHolder
from govern.compliance.calibration import Calibration
from govern.compliance.model.local import LocalModel, default_gguf_path
from govern.compliance.pipeline import AssessmentInput
from govern.settings import Settings, load_settings
from tests.conftest import MODEL_CACHE, wait_for
from tests.unit.compliance.test_pipeline import ART6, CONTRACT, LIBRARY

SETTLED = AssessmentInput("training", CONTRACT, description="Support chats of our customers.")
# The basis comes from the description's phrase only: that needs the model's cross-check.
FROM_TEXT = AssessmentInput(
    "training",
    {"personal_data": True, "gdpr_scope": True},
    description="Processed for the performance of a contract.",
)


def settings(tmp_path: Path, **overrides: object) -> Settings:
    return load_settings(home=tmp_path, config=tmp_path / "none.toml", **overrides)


def assessor(holder: ModelHolder) -> Assessor:
    return Assessor(LIBRARY, holder.get, Calibration({}))


def test_no_model_configured_leaves_settled_verdicts_alone(tmp_path: Path) -> None:
    holder = ModelHolder(settings(tmp_path, llm_backend="none"))
    status = holder.status()
    assert (status.backend, status.state, status.ready) == ("none", "none", False)
    (v,) = assessor(holder).assess(SETTLED, ART6)
    assert v.verdict == "compliant"
    assert v.readers == ("rules", "model unavailable: no language model is configured "
                         "(GOVERN_LLM_BACKEND=none)")  # fmt: skip
    (v,) = assessor(holder).assess(FROM_TEXT, ART6)
    assert v.verdict == "needs_review"


def test_a_model_file_that_is_missing_is_failed_and_settled_verdicts_stand(
    tmp_path: Path,
) -> None:
    holder = ModelHolder(settings(tmp_path, llm_model_file=tmp_path / "gone.gguf"))
    holder.start()
    model = holder.get()
    assert not model.wait_ready(60)
    assert holder.status().state == "failed"
    (v,) = assessor(holder).assess(SETTLED, ART6)
    assert v.verdict == "compliant"
    assert "model unavailable: the local language model failed to load" in v.readers


def test_a_model_converting_its_gguf_does_so_in_a_child_process_and_settled_verdicts_stand(
    tmp_path: Path,
) -> None:
    holder = ModelHolder(settings(tmp_path))
    model = LocalModel(default_gguf_path(), tmp_path / "fresh-cache")
    holder.set(model)
    try:
        (v,) = assessor(holder).assess(SETTLED, ART6)  # its cross-check starts the load
        assert v.verdict == "compliant"
        assert v.readers == (
            "rules",
            "model unavailable: the local language model is still loading (converting its GGUF)",
        )
        assert any("description was not read by the model" in e for e in v.evidence)
        (v,) = assessor(holder).assess(FROM_TEXT, ART6)
        assert v.verdict == "needs_review"
        wait_for(lambda: model.converter_pid is not None, timeout=30)
        assert model.converter_pid != os.getpid()  # the conversion holds another GIL
        status = holder.status()
        assert (status.state, status.ready) == ("converting", False)
    finally:
        model.close()
    assert model.converter_pid is None
    assert not model.wait_ready(30) and holder.status().state == "failed"


@pytest.mark.slow
def test_a_model_reading_its_copy_is_loading_then_ready_and_then_cross_checks(
    tmp_path: Path,
) -> None:
    holder = ModelHolder(settings(tmp_path, llm_cache_dir=MODEL_CACHE))
    model = LocalModel(default_gguf_path(), MODEL_CACHE)
    model.prepare()  # a no-op once the test cache holds the copy
    holder.set(model)
    (v,) = assessor(holder).assess(SETTLED, ART6)
    assert v.verdict == "compliant"
    assert v.readers[1] == (
        "model unavailable: the local language model is still loading (reading its weights)"
    )
    assert holder.status().state in ("loading", "ready")
    assert model.wait_ready(300) and holder.status().ready
    assert model.load_info is not None and model.load_info.from_cache
    (v,) = assessor(holder).assess(SETTLED, ART6)
    assert v.readers == ("rules", f"model:{model.name}")
