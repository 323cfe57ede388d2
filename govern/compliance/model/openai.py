"""The ``openai`` backend: label scoring against any OpenAI-compatible HTTP endpoint.

Two ways to score, because servers differ in what they return:

* ``completions``: ``POST /completions`` with ``echo: true`` and ``logprobs``, once per label,
  over the chat-formatted prompt followed by the label. The server returns the log-probability
  of every prompt token, so the label's own tokens are read off the end and averaged: the same
  quantity the local backend computes. This needs the served model's chat template on our side
  (``llm_openai_chat_template``), since the completions endpoint takes raw text. vLLM and
  llama-cpp-python support it; OpenAI's hosted chat models do not (echo with logprobs is gone
  there).
* ``chat``: ``POST /chat/completions`` with ``logprobs`` and ``top_logprobs`` for one generated
  token. The server applies its own template. A label's score is the log-probability of the
  longest top candidate token that begins the label, so this only looks at the reply's first
  token; labels must differ in their first token to be told apart. A label absent from the top
  candidates is scored one nat below the last candidate (its true value is lower still).

Any transport failure, timeout or 5xx is ``ModelUnavailable``; the pipeline answers needs_review.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx

from govern.compliance.model.base import LanguageModel, check_labels, require_finite
from govern.errors import ConfigError, ModelUnavailable, PromptTooLong

if TYPE_CHECKING:
    from govern.settings import Settings

__all__ = ["OpenAIModel"]

Scoring = Literal["auto", "completions", "chat"]
# OpenAI caps top_logprobs at 20; other servers accept the same.
_TOP_LOGPROBS = 20
_READY_CACHE_SECONDS = 5.0
_CONTEXT_WORDS = ("context length", "context window", "maximum context", "too long")


class OpenAIModel(LanguageModel):
    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | None = None,
        scoring: Scoring = "auto",
        chat_template: str | None = None,
        timeout: float = 30.0,
        connect_timeout: float = 3.0,
    ) -> None:
        if scoring == "completions" and chat_template is None:
            raise ConfigError("completions scoring needs GOVERN_LLM_OPENAI_CHAT_TEMPLATE")
        self.base_url = base_url.rstrip("/")
        self.name = f"openai:{self.base_url}"
        self._model = model
        self._scoring: Scoring = scoring
        self._template = _compile_template(chat_template) if chat_template else None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            trust_env=False,  # the endpoint is named by settings, not by proxy variables
        )
        self._lock = threading.Lock()
        self._ready_at = 0.0
        self._ready = False

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIModel:
        if not settings.llm_openai_base_url:
            raise ConfigError("llm_backend openai needs GOVERN_LLM_OPENAI_BASE_URL")
        template = None
        if settings.llm_openai_chat_template is not None:
            path = Path(settings.llm_openai_chat_template)
            try:
                template = path.read_text()
            except OSError as exc:
                raise ConfigError(f"cannot read chat template {path}") from exc
        key = settings.llm_openai_api_key
        return cls(
            settings.llm_openai_base_url,
            model=settings.llm_openai_model,
            api_key=key.get_secret_value() if key else None,
            scoring=settings.llm_openai_scoring,
            chat_template=template,
            timeout=settings.llm_timeout_seconds,
            connect_timeout=settings.llm_connect_timeout_seconds,
        )

    # -- availability --------------------------------------------------------------------------

    def ready(self) -> bool:
        """Whether the endpoint answered ``GET /models`` recently; checked at most every 5 s."""
        now = time.monotonic()
        with self._lock:
            if now - self._ready_at < _READY_CACHE_SECONDS:
                return self._ready
        try:
            self.model_name()
            ok = True
        except ModelUnavailable:
            ok = False
        with self._lock:
            self._ready, self._ready_at = ok, time.monotonic()
        return ok

    def model_name(self) -> str:
        """The configured model, or the first one the endpoint lists."""
        if self._model is not None:
            self._request("GET", "/models")  # still proves the endpoint is up
            return self._model
        body = self._request("GET", "/models")
        try:
            name = str(body["data"][0]["id"])
        except (KeyError, IndexError, TypeError) as exc:
            raise ModelUnavailable(f"{self.base_url} lists no models") from exc
        self._model = name
        return name

    def close(self) -> None:
        self._http.close()

    # -- scoring -------------------------------------------------------------------------------

    def label_logprobs(self, prompt: str, labels: Sequence[str]) -> dict[str, float]:
        labels = check_labels(labels)
        model = self._model or self.model_name()
        if self._scoring != "chat" and self._template is not None:
            try:
                scores = self._score_completions(model, prompt, labels)
            except _EchoUnsupported:
                if self._scoring == "completions":
                    raise ModelUnavailable(
                        f"{self.base_url} does not return prompt logprobs (echo); "
                        "set GOVERN_LLM_OPENAI_SCORING=chat"
                    ) from None
                self._scoring = "chat"  # remembered: the server will not change its mind
            else:
                return require_finite(scores, self.name)
        return require_finite(self._score_chat(model, prompt, labels), self.name)

    def render(self, prompt: str) -> str:
        """The prompt as one user turn in the served model's chat template."""
        assert self._template is not None
        return str(
            self._template.render(
                messages=[{"role": "user", "content": prompt}],
                add_generation_prompt=True,
                bos_token="",
                eos_token="",
            )
        )

    def _score_completions(self, model: str, prompt: str, labels: list[str]) -> dict[str, float]:
        text = self.render(prompt)
        scores: dict[str, float] = {}
        for label in labels:
            body = self._request(
                "POST",
                "/completions",
                {
                    "model": model,
                    "prompt": text + label,
                    "max_tokens": 1,
                    "temperature": 0,
                    "echo": True,
                    "logprobs": 1,
                },
                echo=True,
            )
            scores[label] = _label_mean_from_echo(body, label)
        return scores

    def _score_chat(self, model: str, prompt: str, labels: list[str]) -> dict[str, float]:
        body = self._request(
            "POST",
            "/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": _TOP_LOGPROBS,
            },
        )
        try:
            top = body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            candidates = [(str(c["token"]), float(c["logprob"])) for c in top]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise ModelUnavailable(
                f"{self.base_url} returned no top_logprobs for chat completions"
            ) from exc
        if not candidates:
            raise ModelUnavailable(f"{self.base_url} returned no top_logprobs")
        floor = min(lp for _, lp in candidates) - 1.0
        scores = {}
        for label in labels:
            best: tuple[int, float] | None = None
            for token, logprob in candidates:
                piece = token.lstrip()
                if piece and label.startswith(piece) and (best is None or len(piece) > best[0]):
                    best = (len(piece), logprob)
            scores[label] = best[1] if best is not None else floor
        return scores

    # -- transport ------------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        echo: bool = False,
    ) -> Any:
        url = self.base_url + path
        try:
            response = self._http.request(method, url, json=payload)
        except httpx.TimeoutException as exc:
            raise ModelUnavailable(
                f"language model endpoint {self.base_url} timed out",
                details={"reason": type(exc).__name__},
            ) from exc
        except httpx.HTTPError as exc:
            raise ModelUnavailable(
                f"language model endpoint {self.base_url} is not reachable",
                details={"reason": type(exc).__name__},
            ) from exc
        if response.status_code in (400, 422):
            message = _error_message(response)
            if any(word in message.lower() for word in _CONTEXT_WORDS):
                raise PromptTooLong(
                    "the prompt does not fit the served model's context window",
                    details={"server": message[:500]},
                )
            if echo:
                raise _EchoUnsupported(message)
        if response.status_code >= 400:
            raise ModelUnavailable(
                f"language model endpoint {self.base_url} answered {response.status_code}",
                details={"server": _error_message(response)[:500]},
            )
        try:
            return response.json()
        except ValueError as exc:
            raise ModelUnavailable(f"{self.base_url} did not answer JSON") from exc


class _EchoUnsupported(Exception):
    """The server refused or ignored ``echo`` with ``logprobs`` on completions."""


def _compile_template(source: str) -> Any:
    # Chat templates are code from a model repository: render them sandboxed, as transformers
    # does, so a template cannot reach Python objects.
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except TemplateError as exc:
        raise ConfigError(f"the chat template does not compile: {exc}") from exc


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict):
        err = body.get("error", body.get("detail", body))
        if isinstance(err, dict):
            return str(err.get("message", err))
        return str(err)
    return str(body)


def _label_mean_from_echo(body: Any, label: str) -> float:
    """Mean log-probability of the tokens that spell ``label`` at the end of the echoed prompt.

    Counted back from the end rather than by ``text_offset``: llama-cpp-python renders special
    tokens as empty strings without shifting the offsets, so offsets do not match the text."""
    try:
        choice = body["choices"][0]
        logprobs = choice["logprobs"]
        tokens = [str(t) for t in logprobs["tokens"]]
        values = logprobs["token_logprobs"]
        generated = int((body.get("usage") or {}).get("completion_tokens", 1))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise _EchoUnsupported("no logprobs in the completions answer") from exc
    end = len(tokens) - generated
    if end <= 0 or len(values) != len(tokens):
        raise _EchoUnsupported("the completions answer did not echo the prompt")
    picked: list[float] = []
    covered = ""
    index = end - 1
    while index >= 0 and len(covered) < len(label):
        value = values[index]
        if value is None:
            raise _EchoUnsupported("the echoed prompt has no logprob for the label")
        picked.append(float(value))
        covered = tokens[index] + covered
        index -= 1
    if not covered.endswith(label) and not label.endswith(covered.lstrip()):
        raise _EchoUnsupported("the echoed tokens do not end with the label")
    return sum(picked) / len(picked)
