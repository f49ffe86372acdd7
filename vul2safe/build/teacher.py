"""The teacher machinery shared by the build stages that ask a model (reflect, prompts).

- :class:`CachedTeacher`: a generation :class:`~vul2safe.generation.base.Session` behind the
  content-addressed :class:`~vul2safe.cache.Cache` (key: teacher identity + messages +
  sampling parameters + sample index), so a re-run or a resumed run sends nothing the teacher
  has answered before;
- :func:`ask_all` / :func:`gather`: questions (:class:`Ask`) go out in bulk; an unusable
  reply (empty, truncated, refused, off-format, not valid JSON of the schema) is asked again
  with the reason appended, up to ``max_retries`` times (:class:`Answer` records every
  failure); a poisoned request is isolated instead of failing its whole batch;
- :func:`parse_json_reply`: the JSON object a reply ends with, or :class:`ReplyError`;
- :func:`render`: the prompt templates in ``vul2safe/build/templates``;
- :class:`Checkpoint` and :func:`fingerprint`: pairs finished by an interrupted run of a
  stage, valid only for the same settings and teacher;
- :func:`resolve_config` / :func:`resolve_cache`: a stage's settings and cache from the
  :class:`~vul2safe.build.BuildContext` unless passed explicitly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext
from vul2safe.build.records import RepairPair, append_pair, read_pairs
from vul2safe.cache import Cache, content_key
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.fileio import write_text_atomic
from vul2safe.generation.base import (
    Completion,
    GenerationRequest,
    Prompt,
    SamplingParams,
    Session,
)

#: attempt ``a`` of sample ``i`` uses sample index ``i + a * RETRY_STRIDE`` (so votes < 1000)
RETRY_STRIDE = 1000
CACHE_NAMESPACE = "teacher"
#: the keys of ``Session.describe()`` that identify the model (not where or how it is served)
IDENTITY_KEYS: tuple[str, ...] = ("backend", "model", "revision", "chat_template", "mode")


# --------------------------------------------------------------------------- templates


@functools.cache
def _environment() -> Any:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("vul2safe.build", "templates"),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
        trim_blocks=False,
    )


def render(name: str, **variables: Any) -> str:
    """Render ``templates/<name>.j2``: the prompts live in files so they can be read and cited."""
    return _environment().get_template(f"{name}.j2").render(**variables).strip()


LANGUAGE_NAMES: dict[str, str] = {
    "c": "C",
    "cpp": "C++",
    "python": "Python",
    "javascript": "JavaScript",
    "typescript": "TypeScript",
    "java": "Java",
    "go": "Go",
    "ruby": "Ruby",
    "php": "PHP",
    "csharp": "C#",
    "rust": "Rust",
}


def language_name(language: str) -> str:
    return LANGUAGE_NAMES.get(language, language.title())


# --------------------------------------------------------------------------- reply parsing


class ReplyError(ValueError):
    """A teacher reply that cannot be used; ``reason`` is recorded and shown to the retry."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)```", re.DOTALL)
_REFUSAL = re.compile(
    r"\b(I\s+can(?:no|')t|I\s+cannot|I'm\s+sorry|I\s+am\s+sorry|I\s+won't|I\s+will\s+not"
    r"|unable\s+to\s+(?:help|assist|comply)|as\s+an\s+AI)\b",
    re.IGNORECASE,
)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _loads_object(text: str) -> dict[str, Any] | None:
    for candidate in (text, _TRAILING_COMMA.sub(r"\1", text)):
        try:
            value = json.loads(candidate)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


def _last_bare_object(text: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    found: dict[str, Any] | None = None
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found = value
        position = text.find("{", end)
    return found


def parse_json_reply(text: str | None, finish_reason: str | None = None) -> dict[str, Any]:
    """The JSON object a reply ends with, or :class:`ReplyError` saying what is wrong.

    Order: truncated (``finish_reason == "length"``) and empty replies are rejected first;
    then the last fenced ``json`` (or unlabelled) block that parses as an object wins
    (trailing commas tolerated); then the last bare ``{...}`` in the text. Without one, the
    reply is a refusal (refusal phrasing), malformed JSON (a fence or brace was there) or
    off-format prose.
    """
    if finish_reason == "length":
        raise ReplyError("truncated (finish_reason=length)")
    if text is None or not text.strip():
        raise ReplyError("empty reply")
    fenced = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("json", "")]
    for body in reversed(fenced):
        value = _loads_object(body)
        if value is not None:
            return value
    value = _last_bare_object(text)
    if value is not None:
        return value
    if _REFUSAL.search(text):
        raise ReplyError("refusal")
    if fenced or "{" in text or "```" in text:
        raise ReplyError("malformed JSON")
    raise ReplyError("off-format reply (no JSON block)")


# --------------------------------------------------------------------------- the cached teacher


def reply_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class Call:
    """One chat request: a conversation ending with a user turn, and its sample index."""

    key: str
    messages: tuple[dict[str, str], ...]
    sample_index: int


class CachedTeacher:
    """A generation :class:`Session` behind the cache: only unseen requests reach the model.

    The cache key is the teacher's identity (``IDENTITY_KEYS`` of ``describe()``, so moving
    a server to another URL or changing its concurrency keeps the cache valid), the messages,
    the sampling parameters and the sample index. Every reply is stored as soon as it
    arrives, including unusable ones: their retries are deterministic too, so an interrupted
    run repeats no call.
    """

    def __init__(self, session: Session | None, cache: Cache, params: SamplingParams) -> None:
        if session is None:
            raise UsageError(
                "this build stage needs a teacher model; pass --teacher-model (and "
                "--teacher-backend/--teacher-url) or set teacher in the build config"
            )
        self.session = session
        self.cache = cache
        self.params = params
        described = session.describe()
        kept = {key: described[key] for key in IDENTITY_KEYS if key in described}
        self.identity: dict[str, Any] = kept or dict(described)
        self.requests_sent = 0
        self.cache_hits = 0
        self.answered = 0  # calls answered in this run, from the cache or the model

    def key(self, call: Call) -> str:
        payload = {
            "teacher": self.identity,
            "messages": [dict(m) for m in call.messages],
            "params": self.params.to_dict(),
            "sample_index": call.sample_index,
        }
        return content_key(json.dumps(payload, sort_keys=True, default=str))

    def complete(self, calls: Sequence[Call]) -> Iterator[tuple[int, Completion]]:
        """Yield ``(index, completion)``: cache hits first, then the model's answers as they
        finish. Identical calls are sent once."""
        keys = [self.key(call) for call in calls]
        hits = self.cache.get_many(CACHE_NAMESPACE, keys)
        waiting: dict[str, list[int]] = {}
        for index, key in enumerate(keys):
            if key in hits:
                self.cache_hits += 1
                self.answered += 1
                yield index, Completion(**hits[key])
            else:
                waiting.setdefault(key, []).append(index)
        if not waiting:
            return
        order = list(waiting)
        requests = [
            GenerationRequest(
                Prompt(
                    key=calls[waiting[k][0]].key,
                    mode="chat",
                    messages=calls[waiting[k][0]].messages,
                ),
                calls[waiting[k][0]].sample_index,
            )
            for k in order
        ]
        for position, completion in self.session.generate(requests, self.params):
            key = order[position]
            self.requests_sent += 1
            self.cache.put(CACHE_NAMESPACE, key, asdict(completion))
            for index in waiting[key]:
                self.answered += 1
                yield index, completion


@dataclass
class Ask:
    """A question for the teacher, validated by ``validate`` (raises :class:`ReplyError`)."""

    key: str
    messages: list[dict[str, str]]
    sample_index: int
    validate: Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Answer:
    """The accepted reply (``value`` parsed, ``text`` raw) or ``None``, and every failure."""

    value: dict[str, Any] | None = None
    text: str = ""
    reply_hash: str = ""
    attempts: int = 0
    failures: list[dict[str, Any]] = field(default_factory=list)


def _call_for(ask: Ask, attempt: int, previous: str) -> Call:
    messages = [dict(m) for m in ask.messages]
    if attempt:
        note = render("retry", attempt=attempt + 1, reason=previous)
        messages[-1]["content"] = f"{messages[-1]['content']}\n\n{note}"
    return Call(
        key=f"{ask.key}:a{attempt}",
        messages=tuple(messages),
        sample_index=ask.sample_index + attempt * RETRY_STRIDE,
    )


#: isolated requests that fail in a row, with no answer in between, before the stage stops
UNREACHABLE_AFTER = 3


def gather(
    teacher: CachedTeacher, calls: Sequence[Call]
) -> tuple[dict[int, Completion], dict[int, str]]:
    """Answers by call index, and the error of each call that failed for good.

    A backend error ends its whole ``generate`` batch, so one poisoned request (say, a prompt
    the server rejects with HTTP 400) would take its batch-mates down with it. On an error
    the unanswered rest is sent again; when a batch fails without any answer it is split in
    halves until the failing call is isolated, and only that call gets the error. When
    ``UNREACHABLE_AFTER`` isolated calls fail in a row without any answer in between, or
    the teacher has not answered a single call of this run, it is considered down and the
    error is raised: stopping (and resuming later from the cache) beats dropping every pair.
    """
    got: dict[int, Completion] = {}
    errors: dict[int, str] = {}
    streak = 0
    last: Vul2SafeError | None = None
    stack = [list(range(len(calls)))]
    while stack:
        group = stack.pop()
        before = len(got)
        try:
            for position, reply in teacher.complete([calls[i] for i in group]):
                got[group[position]] = reply
                streak = 0
            continue
        except Vul2SafeError as exc:
            last = exc
            left = [i for i in group if i not in got]
            if len(got) > before:
                stack.append(left)
            elif len(left) == 1:
                errors[left[0]] = str(exc)
                streak += 1
                if streak >= UNREACHABLE_AFTER:
                    raise
            else:
                middle = len(left) // 2
                stack += [left[middle:], left[:middle]]
    if last is not None and not got and not teacher.answered:
        raise last  # not one answer in this run: the teacher is down (or rejects everything)
    return got, errors


def ask_all(teacher: CachedTeacher, asks: Sequence[Ask], *, max_retries: int) -> list[Answer]:
    """Ask everything in bulk; re-ask the unusable replies, in bulk, up to ``max_retries``.

    A call the backend gave up on (see :func:`gather`) counts as a failed attempt
    (``"teacher error: ..."``) and is asked again like an unusable reply.
    """
    answers = [Answer() for _ in asks]
    pending = list(range(len(asks)))
    for attempt in range(max_retries + 1):
        if not pending:
            break
        calls = [
            _call_for(
                asks[i], attempt, answers[i].failures[-1]["reason"] if answers[i].failures else ""
            )
            for i in pending
        ]
        got, errors = gather(teacher, calls)
        still: list[int] = []
        for position, index in enumerate(pending):
            answer = answers[index]
            answer.attempts += 1
            completion = got.get(position)
            if completion is None:
                reason = f"teacher error: {errors.get(position, 'no answer')}"
                answer.failures.append({"attempt": attempt, "reason": reason, "reply_hash": ""})
                still.append(index)
                continue
            digest = reply_hash(completion.text or "")
            try:
                parsed = parse_json_reply(completion.text, completion.finish_reason)
                answer.value = asks[index].validate(parsed)
            except ReplyError as exc:
                answer.failures.append(
                    {"attempt": attempt, "reason": exc.reason, "reply_hash": digest}
                )
                still.append(index)
                continue
            answer.text, answer.reply_hash = completion.text, digest
        pending = still
    return answers


def resolve_cache(ctx: BuildContext, cache: Cache | None) -> Cache:
    """Explicit argument, else ``ctx.cache`` when the pipeline set one, else the default."""
    return cache or getattr(ctx, "cache", None) or Cache()


def resolve_config(ctx: BuildContext, name: str, config: Any, kind: type[Any]) -> Any:
    """Explicit argument, else ``ctx.config.<name>`` (object or dict), else defaults."""
    if config is not None:
        return config
    found = getattr(ctx.config, name, None) if ctx.config is not None else None
    if isinstance(found, kind):
        return found
    if isinstance(found, dict):
        return kind(**found)
    if found is not None and hasattr(found, "model_dump"):
        return kind(**found.model_dump())
    return kind()


class Checkpoint:
    """Pairs finished by an earlier, interrupted run of a stage, and appending new ones.

    ``path`` holds one finished pair per line (:func:`append_pair`); ``<path>.settings``
    holds the settings fingerprint it was written with. A checkpoint from other settings (or
    another teacher) is discarded rather than mixed in.
    """

    def __init__(self, path: Path | None, stamp: str) -> None:
        self.path = path
        self.stamp = stamp

    def load(self) -> dict[str, RepairPair]:
        if self.path is None:
            return {}
        settings = self.path.with_name(self.path.name + ".settings")
        previous = settings.read_text(encoding="utf-8").strip() if settings.exists() else None
        if previous != self.stamp:
            self.path.unlink(missing_ok=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(settings, self.stamp + "\n")
        return {pair.pair_id: pair for pair in read_pairs(self.path)}

    def add(self, pair: RepairPair) -> None:
        if self.path is not None:
            append_pair(self.path, pair)


def fingerprint(config: Any, teacher: CachedTeacher | None, skip: tuple[str, ...] = ()) -> str:
    """Hash of the settings that change a stage's output (for :class:`Checkpoint`)."""
    settings = {k: v for k, v in asdict(config).items() if k not in skip}
    identity = teacher.identity if teacher else None
    payload = json.dumps({"config": settings, "teacher": identity}, default=str, sort_keys=True)
    return content_key(payload)[:16]
