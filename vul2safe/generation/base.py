"""The generation-backend contract: what ``register_backends`` plugins provide.

A :class:`Backend` (registered by name: ``transformers``, ``vllm``, ``openai``) opens a
:class:`Session` for one model. A session takes :class:`GenerationRequest` s — one per
(prompt, sample index), the unit of resumption — and yields each :class:`Completion` as soon
as it is ready, so the runner can append it to ``samples.jsonl`` at once.

Sample ``i`` of a prompt is generated with seed ``params.seed + i``: a resumed run asks for
exactly the missing (task, sample) pairs and gets the same text the first run would have.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

from vul2safe.errors import UsageError


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings, recorded verbatim in every result file.

    ``max_tokens`` is a ceiling: the local backends lower it per request to what the model's
    context leaves after the prompt (:func:`token_budget`); the ``openai`` backend cannot know
    the served context and leaves that cap to the server. ``None`` means "the caller's
    default": ``vul2safe eval`` then uses each benchmark's own (``default_max_tokens``, as its
    official harness does); a backend given ``None`` generates up to the context's end (the
    ``openai`` backend sends no ``max_tokens``: the server's default).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int | None = None
    seed: int = 0
    stop: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["stop"] = list(self.stop)
        return data


@dataclass(frozen=True)
class Prompt:
    """What one task asks of a model.

    ``mode="chat"``: ``messages`` (OpenAI-style role/content dicts) rendered through the
    model's chat template when it has one; ``response_prefix`` is text the assistant turn
    starts with (the model continues it). ``mode="completion"``: ``text`` is continued as is.
    """

    key: str  # the task id
    mode: Literal["chat", "completion"]
    messages: tuple[dict[str, str], ...] = ()
    text: str = ""
    response_prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "mode": self.mode,
            "messages": [dict(m) for m in self.messages],
            "text": self.text,
            "response_prefix": self.response_prefix,
        }


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to produce: ``prompt`` × ``sample_index``."""

    prompt: Prompt
    sample_index: int


@dataclass
class Completion:
    """A model's answer. ``text`` excludes the prompt and the response prefix."""

    text: str
    finish_reason: str | None = None  # "stop", "length", ...
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass
class BackendOptions:
    """Everything needed to open a model; unknown backend-specific knobs go in ``extra``."""

    model: str
    revision: str | None = None
    base_url: str | None = None  # openai
    api_key_env: str = "OPENAI_API_KEY"  # openai: the variable holding the key
    use_chat_template: bool = True  # False: completion mode even if a template exists
    device: str = "auto"  # transformers
    dtype: str = "auto"
    batch_size: int = 8  # transformers: prompts per generate() call
    concurrency: int = 16  # openai: requests in flight
    timeout_s: float = 120.0  # openai: per request
    max_retries: int = 5  # openai: on 429 / 5xx / connection errors
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. vllm tensor_parallel_size


def token_budget(max_tokens: int | None, context: int | None, prompt_tokens: int) -> int | None:
    """Tokens a request may generate: ``max_tokens`` capped by the context the prompt leaves.

    ``None`` when neither bounds it (the caller decides); never below 0 — a prompt that fills
    the context gets an empty completion cut for length rather than an engine error.
    """
    room = None if context is None else max(0, context - prompt_tokens)
    if max_tokens is None:
        return room
    return max_tokens if room is None else min(max_tokens, room)


def check_extra(backend: str, extra: dict[str, Any], valid: Iterable[str]) -> None:
    """Refuse ``--backend-arg`` keys a backend would otherwise silently ignore (a typo, or a
    knob it no longer reads): one line naming the valid keys."""
    known = sorted(valid)
    unknown = sorted(set(extra) - set(known))
    if unknown:
        raise UsageError(
            f"the {backend} backend has no option {', '.join(map(repr, unknown))}; "
            f"valid --backend-arg keys: {', '.join(known) or '(none)'} (see docs/backends.md)"
        )


class Session:
    """An opened model. Subclasses implement :meth:`describe` and :meth:`generate`."""

    def describe(self) -> dict[str, Any]:
        """Model id, revision, backend, chat template (text or None) and mode, for results."""
        raise NotImplementedError

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index into requests, completion)`` as each finishes, in any order.

        A request that fails for good (after retries) raises a
        :class:`~vul2safe.errors.Vul2SafeError` naming the cause; completions already
        yielded stay valid (the runner has saved them).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release the model (GPU memory, HTTP client)."""

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Backend:
    """A registered generation backend: a name and a way to open a :class:`Session`."""

    name: ClassVar[str]
    description: ClassVar[str] = ""

    def open(self, options: BackendOptions) -> Session:
        """Check the model/endpoint exists (one clear error if not) and load it."""
        raise NotImplementedError
