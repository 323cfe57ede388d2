"""The ``openai`` backend against a real OpenAI-compatible server: llama-cpp-python's server
over the same GGUF the local backend loads, started on a free loopback port."""

from __future__ import annotations

import math
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from govern.compliance.model import open_model
from govern.compliance.model.local import LocalModel, default_gguf_path
from govern.compliance.model.openai import OpenAIModel
from govern.errors import ModelUnavailable, PromptTooLong
from tests.conftest import free_port, wait_for
from tests.unit.compliance.model.fixtures import EASY_PROMPTS, local_model, model_settings

pytest.importorskip("llama_cpp.server", reason="llama-cpp-python[server] is in the dev extra")

__all__ = ["local_model"]

SERVER = Path(__file__).with_name("llama_server.py")
API_KEY = "test-key-not-secret"


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, str(SERVER),
                "--model", str(default_gguf_path()),
                "--host", "127.0.0.1", "--port", str(port),
                "--n_threads", "2", "--n_ctx", "2048", "--verbose", "false",
                "--api_key", API_KEY,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"

    def up() -> bool:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            headers = {"Authorization": f"Bearer {API_KEY}"}
            return httpx.get(f"{url}/models", headers=headers, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(up, timeout=120)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def remote(tmp_path: Path, url: str, **overrides: object) -> OpenAIModel:
    overrides.setdefault("llm_openai_api_key", API_KEY)
    model = open_model(
        model_settings(tmp_path, llm_backend="openai", llm_openai_base_url=url, **overrides)
    )
    assert isinstance(model, OpenAIModel)
    return model


@pytest.fixture
def completions(tmp_path: Path, llama_url: str, local_model: LocalModel) -> Iterator[OpenAIModel]:
    # The served model's chat template, as saved next to the local model's converted copy, so
    # both backends see the same prompt text.
    template = local_model.cache_path / "chat_template.jinja"
    model = remote(
        tmp_path, llama_url, llm_openai_scoring="completions", llm_openai_chat_template=template
    )
    yield model
    model.close()


def test_the_endpoint_is_ready_and_names_its_model(completions: OpenAIModel) -> None:
    assert completions.ready()
    assert completions.model_name().endswith(".gguf")


def test_prompts_render_exactly_as_the_local_tokenizer_formats_them(
    completions: OpenAIModel, local_model: LocalModel
) -> None:
    prompt = "Is consent stated?\nText: 'yes, in writing.'"
    rendered = completions.render(prompt)
    assert local_model._tokenizer(rendered, add_special_tokens=False)["input_ids"] == (
        local_model.chat_ids(prompt)
    )


# llama-cpp-python's server is slow to echo logprobs (it sorts the vocabulary in Python for every
# prompt token), so a few prompts: single- and multi-token labels, two and three of them.
PROMPTS = [
    EASY_PROMPTS[0],
    ("Is this use of the data fine?", ["compliant", "non_compliant", "needs review"], ""),
    (
        "Text: 'The patients explicitly refused consent.' Is consent stated as given, refused "
        "or unknown? Answer given, refused or unknown.",
        ["given", "refused", "unknown"],
        "refused",
    ),
]


@pytest.mark.parametrize(("prompt", "labels", "_expected"), PROMPTS)
def test_completions_scoring_orders_labels_as_the_local_backend_does(
    completions: OpenAIModel,
    local_model: LocalModel,
    prompt: str,
    labels: list[str],
    _expected: str,
) -> None:
    served = completions.label_logprobs(prompt, labels)
    local = local_model.label_logprobs(prompt, labels)
    assert all(math.isfinite(v) for v in served.values())
    assert sorted(labels, key=served.__getitem__) == sorted(labels, key=local.__getitem__)
    # Same weights, quantised arithmetic in llama.cpp against float32 in torch: close, not equal.
    assert served == pytest.approx(local, abs=0.5)


@pytest.mark.parametrize(("prompt", "labels", "expected"), EASY_PROMPTS[1:])
def test_chat_scoring_reads_the_first_tokens_top_logprobs(
    tmp_path: Path, llama_url: str, prompt: str, labels: list[str], expected: str
) -> None:
    model = remote(tmp_path, llama_url, llm_openai_scoring="chat")
    scores = model.label_logprobs(prompt, labels)
    assert list(scores) == labels
    assert all(math.isfinite(v) for v in scores.values())
    assert max(scores, key=scores.__getitem__) == expected


def test_auto_scoring_without_a_template_uses_chat(tmp_path: Path, llama_url: str) -> None:
    prompt, labels, expected = EASY_PROMPTS[2]
    auto = remote(tmp_path, llama_url).label_logprobs(prompt, labels)
    chat = remote(tmp_path, llama_url, llm_openai_scoring="chat").label_logprobs(prompt, labels)
    assert auto == pytest.approx(chat)
    assert max(auto, key=auto.__getitem__) == expected


def test_a_prompt_beyond_the_servers_context_is_refused(completions: OpenAIModel) -> None:
    with pytest.raises(PromptTooLong):
        completions.label_logprobs("consent " * 3000, ["yes", "no"])


def test_a_wrong_api_key_is_unavailable_with_the_servers_status(
    tmp_path: Path, llama_url: str
) -> None:
    model = remote(tmp_path, llama_url, llm_openai_api_key="wrong-key")
    assert not model.ready()
    with pytest.raises(ModelUnavailable, match="answered 401"):
        model.label_logprobs("Is the sky blue?", ["yes", "no"])


def test_a_server_that_is_down_is_unavailable(tmp_path: Path) -> None:
    model = remote(tmp_path, f"http://127.0.0.1:{free_port()}/v1")
    assert not model.ready()
    with pytest.raises(ModelUnavailable, match="not reachable") as caught:
        model.label_logprobs("Is the sky blue?", ["yes", "no"])
    assert caught.value.http_status == 503


def test_a_server_that_never_answers_times_out_as_unavailable(tmp_path: Path) -> None:
    """A real socket that accepts connections and then says nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        model = remote(
            tmp_path,
            f"http://127.0.0.1:{port}/v1",
            llm_openai_model="any",
            llm_timeout_seconds=0.5,
        )
        started = time.monotonic()
        with pytest.raises(ModelUnavailable, match="timed out"):
            model.label_logprobs("Is the sky blue?", ["yes", "no"])
        assert time.monotonic() - started < 5
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
