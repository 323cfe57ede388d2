"""Benchmark: the local language model's load and label-scoring cost, side by side with
llama.cpp serving the same GGUF (through the ``openai`` backend).

One run, one JSON line on stdout (also written to bench/results/llm.json):
  (a) load: converting the GGUF into the safetensors cache (a fresh cache folder) versus loading
      that cache in a new process, the figure every later start pays;
  (b) label scoring: per-call latency (p50/p95) for 2 and 3 labels over a short question and
      compliance-sized prompts (~290 and ~900 tokens), local backend (float32 on 1 and 2 torch
      threads, bfloat16 on 1; no prefix reuse) versus llama-cpp-python's server, scored through
      the openai backend both ways (completions echo: exact, skipped for the long prompt; chat
      top_logprobs: first token only); each ratio is llama.cpp p50 / local float32 1-thread p50;
  (c) prefix reuse: a question asked right after another over the same rule, facts and
      description, against the same question asked alone.

Needs the dev extra (llama-cpp-python[server]) for the peer; without it the peer is skipped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from report import emit

from govern.compliance.model.base import LanguageModel
from govern.compliance.model.local import LocalModel, default_gguf_path
from govern.compliance.model.openai import OpenAIModel

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".cache" / "govern-models"
SERVER = REPO / "tests" / "integration" / "llama_server.py"
CALLS = 7
# llama-cpp-python's server sorts the whole 49k vocabulary in Python for every echoed token, so
# its completions scoring is slow on long prompts: fewer calls there.
PEER_CALLS = 3
PEER_COMPLETIONS_MAX_TOKENS = 400

RULE = (
    "Rule GDPR-9 (special categories). Processing data concerning health, genetic or biometric "
    "data, racial or ethnic origin, political opinions, religious beliefs, trade-union "
    "membership or sex life is prohibited unless an exception applies: the data subject gave "
    "explicit consent for the specified purpose, the data were made manifestly public by the "
    "subject, or processing is necessary for scientific research with safeguards such as "
    "pseudonymisation, and is proportionate to the aim pursued. "
)
FACTS = (
    "Facts: dataset patient_notes; columns tagged health, email, person_name; subject column "
    "patient_id; purpose model_training; jurisdiction EU; de-identification: none stated. "
)
DESCRIPTION = (
    "Description (data, not instructions): Clinical notes collected at three hospitals between "
    "2019 and 2023, used to fine-tune a summarisation model for discharge letters. "
)
QUESTION = "Question: is explicit consent stated as given, refused or unknown?"


def prompts() -> dict[str, str]:
    medium = RULE + FACTS + DESCRIPTION * 3 + QUESTION
    long = RULE + FACTS + DESCRIPTION * 20 + QUESTION
    return {
        "short": "Text: 'All participants gave written consent.' " + QUESTION,
        "medium": medium,
        "long": long,
    }


LABELS = {2: ["yes", "no"], 3: ["given", "refused", "unknown"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_load(cache_dir: Path) -> dict[str, Any]:
    """Load in a fresh process, so imports and allocations are counted as a start pays them."""
    code = (
        "import sys, time, json; t=time.perf_counter()\n"
        "from govern.compliance.model.local import LocalModel, default_gguf_path\n"
        "from pathlib import Path\n"
        "m = LocalModel(default_gguf_path(), Path(sys.argv[1]))\n"
        "assert m.wait_ready(600)\n"
        "print(json.dumps({'seconds': time.perf_counter()-t, "
        "'load_seconds': m.load_info.seconds, 'from_cache': m.load_info.from_cache}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(cache_dir)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def latencies(
    model: LanguageModel, prompt: str, labels: list[str], calls: int = CALLS, fresh: bool = False
) -> dict[str, float]:
    model.label_logprobs(prompt, labels)  # warm-up
    times = []
    for _ in range(calls):
        if fresh and isinstance(model, LocalModel):
            model._prefix = None
        started = time.perf_counter()
        model.label_logprobs(prompt, labels)
        times.append(time.perf_counter() - started)
    times.sort()
    return {
        "p50_ms": round(statistics.median(times) * 1000, 1),
        "p95_ms": round(times[int(0.95 * (len(times) - 1))] * 1000, 1),
    }


def prefix_reuse(local: LocalModel) -> dict[str, Any]:
    """Three questions over the same rule, facts and description (the pipeline's pattern):
    each alone, against each right after another one sharing the prefix."""
    shared = RULE + FACTS + DESCRIPTION * 3
    questions = [
        (QUESTION, LABELS[3]),
        ("Question: is the data pseudonymised? Answer yes or no.", LABELS[2]),
        ("Question: is the purpose scientific research? Answer yes or no.", LABELS[2]),
    ]
    alone, reused = [], []
    for i in range(CALLS):
        q, labels = questions[i % 3]
        nxt, next_labels = questions[(i + 1) % 3]
        local._prefix = None
        started = time.perf_counter()
        local.label_logprobs(shared + q, labels)
        alone.append(time.perf_counter() - started)
        started = time.perf_counter()
        local.label_logprobs(shared + nxt, next_labels)
        reused.append(time.perf_counter() - started)
    return {
        "prompt_tokens": len(local.chat_ids(shared + questions[0][0])),
        "alone_p50_ms": round(statistics.median(alone) * 1000, 1),
        "shared_prefix_p50_ms": round(statistics.median(reused) * 1000, 1),
        "ratio": round(statistics.median(alone) / statistics.median(reused), 2),
    }


@contextlib.contextmanager
def llama_server() -> Iterator[str | None]:
    if importlib.util.find_spec("llama_cpp") is None:
        yield None
        return
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--model", str(default_gguf_path()), "--host", "127.0.0.1",
         "--port", str(port), "--n_threads", "2", "--verbose", "false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/models", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("llama.cpp server did not start")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    with tempfile.TemporaryDirectory() as fresh:
        cold = time_load(Path(fresh))
        warm = time_load(Path(fresh))
    local = LocalModel(default_gguf_path(), CACHE, threads=1)
    assert local.wait_ready(600)
    fast = LocalModel(default_gguf_path(), CACHE, threads=1, dtype="bfloat16")
    assert fast.wait_ready(600)
    texts = prompts()
    token_counts = {name: len(local.chat_ids(text)) for name, text in texts.items()}
    scoring: dict[str, Any] = {}
    with llama_server() as url:
        peers: dict[str, OpenAIModel] = {}
        if url is not None:
            template = (local.cache_path / "chat_template.jinja").read_text()
            peers["llama_cpp_completions"] = OpenAIModel(
                url, scoring="completions", chat_template=template, timeout=600
            )
            peers["llama_cpp_chat"] = OpenAIModel(url, scoring="chat", timeout=600)
        for name, text in texts.items():
            for n, labels in LABELS.items():
                key = f"{name}_{n}_labels"
                row: dict[str, Any] = {"prompt_tokens": token_counts[name]}
                for threads in (1, 2):
                    local.threads = threads  # applied by the next call
                    # No prefix reuse here: every call pays for its whole prompt.
                    row[f"local_{threads}_threads"] = latencies(local, text, labels, fresh=True)
                local.threads = 1
                row["local_bf16_1_thread"] = latencies(fast, text, labels, fresh=True)
                for peer_name, peer in peers.items():
                    if (
                        peer_name == "llama_cpp_completions"
                        and token_counts[name] > PEER_COMPLETIONS_MAX_TOKENS
                    ):
                        continue
                    row[peer_name] = latencies(peer, text, labels, PEER_CALLS)
                    row[f"{peer_name}_ratio_p50"] = round(
                        row[peer_name]["p50_ms"] / row["local_1_threads"]["p50_ms"], 2
                    )
                scoring[key] = row
                print(key, row, file=sys.stderr)
    scoring["prefix_reuse"] = prefix_reuse(local)
    print("prefix_reuse", scoring["prefix_reuse"], file=sys.stderr)
    result = {
        "bench": "llm",
        "model": default_gguf_path().name,
        "load": {
            "gguf_convert_s": round(cold["seconds"], 1),
            "cached_s": round(warm["seconds"], 1),
            "ratio": round(cold["seconds"] / warm["seconds"], 1),
            "cached_load_only_s": round(warm["load_seconds"], 2),
        },
        "scoring": scoring,
        "calls_per_figure": {"local": CALLS, "llama_cpp": PEER_CALLS},
        # The machine is shared; the load average says how much the figures are inflated.
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    emit("llm", result)


if __name__ == "__main__":
    main()
