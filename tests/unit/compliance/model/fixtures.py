"""The real local model, loaded once per test process.

Its converted safetensors copy is cached in ``<repo>/.cache/govern-models`` (gitignored), so a
fresh clone pays the ~25 s GGUF conversion once and every later run reloads in a few seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from govern.compliance.model.local import LocalModel, shared_local_model
from govern.settings import Settings, load_settings
from tests.conftest import MODEL_CACHE

LOAD_TIMEOUT = 300.0

# Prompts this 135M model answers correctly with a clear margin (checked on the local backend
# and on llama.cpp over the same GGUF). Its judgement on anything subtler is poor; see
# docs/models.md.
EASY_PROMPTS: list[tuple[str, list[str], str]] = [
    (
        "What colour is the sky on a clear day? Answer blue, green or red.",
        ["blue", "green", "red"],
        "blue",
    ),
    (
        "What is the capital of France? Answer Paris, Berlin or Madrid.",
        ["Paris", "Berlin", "Madrid"],
        "Paris",
    ),
    ("Question: Is 2+2 equal to 4?\nAnswer with one word, yes or no.", ["yes", "no"], "yes"),
]


def model_settings(home: Path, **overrides: object) -> Settings:
    return load_settings(
        home=home, config=home / "none.toml", llm_cache_dir=MODEL_CACHE, **overrides
    )


@pytest.fixture(scope="session")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> LocalModel:
    """The process's shared local model, loaded (from the repo cache when present)."""
    model = shared_local_model(model_settings(tmp_path_factory.mktemp("llm-home")))
    assert model.wait_ready(LOAD_TIMEOUT), "the local model did not load"
    return model
