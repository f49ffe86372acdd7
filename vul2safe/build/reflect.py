"""Stage 2 of PrimeVul+: the teacher verifies each fix by self-reflection, several votes.

For every pair and every vote the teacher holds one three-turn conversation (templates in
``vul2safe/build/templates``):

1. **analyse** the vulnerable function: root cause, vulnerable lines, CWE;
2. **judge** the fixed function: does it remove the weakness without breaking behaviour;
3. **reflect** on its own two answers: confirm them or revise them.

Each turn asks for a strict JSON answer in a fenced block. Requests go out turn by turn for a
whole chunk of pairs at once, so the backend keeps ``concurrency`` requests in flight. Every
reply goes through the content-addressed :class:`~vul2safe.cache.Cache` (key: teacher
identity + messages + sampling parameters + sample index), so a re-run or a resumed run sends
nothing the teacher has answered before. A reply that is empty, truncated, refused, off-format
or not valid JSON of the schema is asked again (new sample index, the reason appended to the
question) up to ``max_retries`` times; after that the vote is invalid and says why.

The votes' final (post-reflection) ``fix_is_correct`` decide the verdict by majority;
confidence is the share of valid votes that agree, moved by scanner evidence (flagged before
and clean after: ``+scanner_weight``; flagged after: ``-scanner_weight``). A pair survives
when the verdict is "fix is correct" and confidence reaches the threshold; every dropped pair
carries its reason.

The teacher machinery here (:class:`CachedTeacher`, :func:`ask_all`, :func:`parse_json_reply`)
is shared with the prompts stage.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.records import RepairPair, append_pair, read_pairs
from vul2safe.cache import Cache, content_key
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import (
    Completion,
    GenerationRequest,
    Prompt,
    SamplingParams,
    Session,
)
from vul2safe.schema import Sample, SampleResult, Severity, normalize_cwe

STAGE = "reflect"
STEPS: tuple[str, ...] = ("analyse", "judge", "reflect")
#: attempt ``a`` of sample ``i`` uses sample index ``i + a * RETRY_STRIDE`` (so votes < 1000)
RETRY_STRIDE = 1000
CACHE_NAMESPACE = "teacher"
#: the keys of ``Session.describe()`` that identify the model (not where or how it is served)
IDENTITY_KEYS: tuple[str, ...] = ("backend", "model", "revision", "chat_template", "mode")


@dataclass
class ReflectConfig:
    """Settings of the reflect stage (``BuildConfig.reflect``)."""

    votes: int = 3
    """Independent three-turn conversations per pair; their final verdicts are voted on."""
    temperature: float = 0.7
    """Sampling temperature: votes only differ if the teacher samples."""
    max_tokens: int = 1024
    """Per reply; a reply cut at this length (finish_reason "length") is asked again."""
    confidence_threshold: float = 0.66
    """Minimum confidence (agreement + scanner evidence) for a pair to survive; 2 of 3 passes."""
    scanner_weight: float = 0.15
    """Confidence added when scanners flag the vulnerable version only, removed when they
    flag the fixed version."""
    max_retries: int = 2
    """Extra attempts per turn after an unusable reply; then the vote is invalid."""
    min_valid_votes: int = 1
    """Pairs with fewer valid votes are dropped (a lone vote has agreement 1.0)."""
    scanners: list[str] | None = None
    """Scanners for the evidence (``None``: every default scanner covering the language;
    ``[]``: no scanner evidence)."""
    scanner_min_severity: str = "medium"
    """Findings at or above this severity count as "flagged" (high- and medium-risk)."""
    max_lines: int = 600
    """Functions longer than this are dropped unasked (they overflow a teacher's context)."""
    chunk_pairs: int = 128
    """Pairs per bulk round. Concurrency comes from the backend (``BackendOptions.
    concurrency``): a round of ``chunk_pairs * votes`` requests keeps it busy; finished pairs
    are checkpointed after each chunk."""
    seed: int = 0
    """Base seed; request ``i`` is sampled with ``seed + i`` (see ``RETRY_STRIDE``)."""


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


def number_lines(code: str) -> str:
    """``"   1 | first line"``: line numbers let the teacher name lines without counting."""
    return "\n".join(f"{i:4d} | {line}" for i, line in enumerate(code.splitlines(), 1))


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


def get_bool(obj: dict[str, Any], key: str) -> bool:
    """A boolean field; ``"yes"``/``"true"`` strings are accepted, anything else rejected."""
    value = obj.get(key)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "false", "no"):
        return value.strip().lower() in ("true", "yes")
    raise ReplyError(f"schema: {key!r} missing or not a boolean")


def get_lines(value: Any, n_lines: int) -> list[int]:
    """Line numbers in ``1..n_lines``, sorted and unique; out-of-range numbers are dropped."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ReplyError("schema: 'vulnerable_lines' is not a list")
    lines: set[int] = set()
    for item in value:
        if isinstance(item, bool):
            raise ReplyError("schema: 'vulnerable_lines' holds a non-integer")
        if isinstance(item, str) and item.strip().isdigit():
            item = int(item)
        if not isinstance(item, int):
            raise ReplyError("schema: 'vulnerable_lines' holds a non-integer")
        if 1 <= item <= n_lines:
            lines.add(item)
    return sorted(lines)


def get_cwe(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return normalize_cwe(value) if isinstance(value, str | int) else None


def validate_analysis(obj: dict[str, Any], n_lines: int) -> dict[str, Any]:
    """Schema of turn 1 (see ``analyse.j2``)."""
    root_cause = obj.get("root_cause")
    if not isinstance(root_cause, str):
        raise ReplyError("schema: 'root_cause' missing or not a string")
    if "vulnerable_lines" not in obj:
        raise ReplyError("schema: 'vulnerable_lines' missing")
    return {
        "is_vulnerable": get_bool(obj, "is_vulnerable"),
        "root_cause": root_cause.strip(),
        "vulnerable_lines": get_lines(obj.get("vulnerable_lines"), n_lines),
        "cwe": get_cwe(obj.get("cwe")),
    }


def validate_judgement(obj: dict[str, Any]) -> dict[str, Any]:
    """Schema of turn 2 (see ``judge.j2``); only ``fix_is_correct`` is required."""
    out: dict[str, Any] = {"fix_is_correct": get_bool(obj, "fix_is_correct")}
    for key in ("removes_weakness", "preserves_behaviour"):
        if key in obj:
            out[key] = get_bool(obj, key)
    explanation = obj.get("explanation")
    out["explanation"] = explanation.strip() if isinstance(explanation, str) else ""
    return out


def validate_reflection(obj: dict[str, Any], n_lines: int) -> dict[str, Any]:
    """Schema of turn 3 (see ``reflect.j2``); lines and CWE may be omitted (= unchanged)."""
    out: dict[str, Any] = {
        "confirmed": get_bool(obj, "confirmed"),
        "fix_is_correct": get_bool(obj, "fix_is_correct"),
    }
    if "vulnerable_lines" in obj:
        out["vulnerable_lines"] = get_lines(obj.get("vulnerable_lines"), n_lines)
    if "cwe" in obj:
        out["cwe"] = get_cwe(obj.get("cwe"))
    revision = obj.get("revision")
    out["revision"] = revision.strip() if isinstance(revision, str) else ""
    return out


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
        settings.write_text(self.stamp + "\n", encoding="utf-8")
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


# --------------------------------------------------------------------------- voting


@dataclass(frozen=True)
class Verdict:
    """The outcome of the votes for one pair."""

    fix_is_correct: bool | None  # None: no valid vote, or a tie
    valid_votes: int
    agreement: float  # share of valid votes agreeing with the verdict
    confidence: float  # agreement + scanner bonus, clipped to [0, 1]
    keep: bool
    drop_reason: str | None


def aggregate_votes(
    verdicts: Sequence[bool | None],
    *,
    bonus: float = 0.0,
    threshold: float = 0.66,
    min_valid: int = 1,
) -> Verdict:
    """Majority over the valid (non-``None``) votes; keep "fix is correct" above threshold.

    A tie has no verdict. ``confidence = clip(agreement + bonus, 0, 1)`` where ``bonus`` is
    the scanner evidence (:func:`scanner_bonus`). Comparisons allow 1e-9 of float slack, so
    2/3 passes a threshold of 0.66 and 0.6666666 alike.
    """
    valid = [v for v in verdicts if v is not None]
    yes, no = sum(valid), len(valid) - sum(valid)
    if not valid:
        return Verdict(None, 0, 0.0, 0.0, False, "no valid teacher vote")
    if len(valid) < min_valid:
        return Verdict(
            None, len(valid), 0.0, 0.0, False, f"{len(valid)} valid vote(s), need {min_valid}"
        )
    if yes == no:
        reason = f"teacher votes tied {yes}-{no} on whether the fix is correct"
        return Verdict(None, len(valid), 0.5, 0.5, False, reason)
    verdict = yes > no
    agreement = max(yes, no) / len(valid)
    confidence = min(1.0, max(0.0, agreement + bonus))
    if not verdict:
        reason = f"teacher judged the fix incorrect ({no} of {len(valid)} valid votes)"
        return Verdict(False, len(valid), agreement, confidence, False, reason)
    if confidence + 1e-9 < threshold:
        reason = (
            f"confidence {confidence:.2f} below threshold {threshold:.2f} "
            f"(agreement {agreement:.2f}, scanner evidence {bonus:+.2f})"
        )
        return Verdict(True, len(valid), agreement, confidence, False, reason)
    return Verdict(True, len(valid), agreement, confidence, True, None)


def scanner_bonus(evidence: dict[str, Any] | None, weight: float) -> tuple[float, str]:
    """``+weight`` when flagged before and clean after, ``-weight`` when flagged after."""
    scan = (evidence or {}).get("scanner") or {}
    before, after = scan.get("before_flagged"), scan.get("after_flagged")
    if before is None or after is None:
        return 0.0, "scanner evidence: none (no scanner result for both versions)"
    if after:
        return -weight, f"scanner evidence: the fixed version is still flagged ({-weight:+.2f})"
    if before:
        return weight, f"scanner evidence: flagged before, clean after ({weight:+.2f})"
    return 0.0, "scanner evidence: neither version flagged (+0.00)"


def majority_lines(line_sets: Sequence[Sequence[int]]) -> list[int]:
    """Lines named by at least half of the votes (rounded up)."""
    if not line_sets:
        return []
    need = (len(line_sets) + 1) // 2
    counts = Counter(line for lines in line_sets for line in set(lines))
    return sorted(line for line, count in counts.items() if count >= need)


# --------------------------------------------------------------------------- scanner evidence


def _finding_row(finding: Any) -> dict[str, Any]:
    return {
        "scanner": finding.scanner,
        "rule_id": finding.rule_id,
        "cwe": list(finding.cwe),
        "severity": finding.severity.value,
        "line": finding.start_line,
    }


def collect_evidence(
    pairs: Sequence[RepairPair],
    scanner_names: Sequence[str] | None,
    *,
    min_severity: str,
    cache: Cache,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Scan every pair's vulnerable and fixed code in ONE engine call (one tool process per
    scanner for the whole stage). Returns evidence per pair id and the scanners' metadata."""
    from vul2safe.scanning import scan_samples

    minimum = Severity.parse(min_severity)
    shells = []
    for pair in pairs:
        for side, code in (("before", pair.vulnerable), ("after", pair.fixed)):
            sample = Sample(f"{pair.pair_id}#{side}", code, pair.language, f"{pair.pair_id}#{side}")
            shells.append(SampleResult(sample))
    if not shells:
        return {}, {}
    run = scan_samples(shells, scanner_names, cache=cache)
    results = {r.sample.id: r for r in run.results}
    evidence: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        before, after = results[f"{pair.pair_id}#before"], results[f"{pair.pair_id}#after"]
        ok_before = {r.scanner for r in before.reports if r.ok}
        ok_after = {r.scanner for r in after.reports if r.ok}
        both = sorted(ok_before & ok_after)

        def flagged(result: SampleResult, both: list[str] = both) -> list[dict[str, Any]]:
            return [
                _finding_row(f)
                for r in result.reports
                if r.scanner in both
                for f in r.findings
                if f.severity.at_least(minimum)
            ]

        before_rows, after_rows = flagged(before), flagged(after)
        evidence[pair.pair_id] = {
            "scanner": {
                "scanners": both,
                "min_severity": minimum.value,
                "before_flagged": bool(before_rows) if both else None,
                "after_flagged": bool(after_rows) if both else None,
                "before_findings": before_rows,
                "after_findings": after_rows,
                "errors": sorted(set(before.errors + after.errors)),
            }
        }
    return evidence, {"scanners": run.scanners, "skipped": run.skipped_scanners}


# --------------------------------------------------------------------------- the stage


@dataclass
class _Vote:
    """One conversation in progress."""

    pair: RepairPair
    index: int
    users: list[str]  # the three user turns
    messages: list[dict[str, str]]
    record: dict[str, Any]
    alive: bool = True


def _diff(pair: RepairPair, limit: int = 200) -> str:
    text = pair.diff or "".join(
        difflib.unified_diff(
            pair.vulnerable.splitlines(keepends=True),
            pair.fixed.splitlines(keepends=True),
            "vulnerable",
            "fixed",
            n=2,
        )
    )
    lines = text.splitlines()
    return "\n".join(lines[:limit] + (["... (diff truncated)"] if len(lines) > limit else []))


def conversation_turns(pair: RepairPair) -> list[str]:
    """The three user turns for one pair (the same for every vote)."""
    common = {
        "language": language_name(pair.language),
        "fence": pair.language,
        "func_name": pair.func_name or "(unnamed)",
        "file_name": pair.file_name or "",
    }
    return [
        render("analyse", code=number_lines(pair.vulnerable), **common),
        render("judge", code=number_lines(pair.fixed), diff=_diff(pair), **common),
        render("reflect"),
    ]


def _validator(step: str, n_lines: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    if step == "analyse":
        return functools.partial(validate_analysis, n_lines=n_lines)
    if step == "judge":
        return validate_judgement
    return functools.partial(validate_reflection, n_lines=n_lines)


def _run_votes(
    pairs: Sequence[RepairPair], teacher: CachedTeacher, config: ReflectConfig
) -> dict[str, list[dict[str, Any]]]:
    """All votes of all ``pairs``, turn by turn, each turn one bulk request (plus retries)."""
    system = {"role": "system", "content": render("system", role="reviewer")}
    votes: list[_Vote] = []
    for pair in pairs:
        users = conversation_turns(pair)
        for index in range(config.votes):
            record: dict[str, Any] = {
                "index": index,
                "valid": False,
                "invalid_reason": None,
                "reply_hashes": {},
                "failed_attempts": [],
            }
            votes.append(_Vote(pair, index, users, [system], record))
    for turn, step in enumerate(STEPS):
        active = [vote for vote in votes if vote.alive]
        for vote in active:
            vote.messages.append({"role": "user", "content": vote.users[turn]})
        asks = [
            Ask(
                key=f"{vote.pair.pair_id}:v{vote.index}:{step}",
                messages=vote.messages,
                sample_index=vote.index,
                validate=_validator(step, len(vote.pair.vulnerable.splitlines())),
            )
            for vote in active
        ]
        for vote, answer in zip(
            active, ask_all(teacher, asks, max_retries=config.max_retries), strict=True
        ):
            record = vote.record
            record["failed_attempts"] += [{"step": step, **f} for f in answer.failures]
            if answer.value is None:
                vote.alive = False
                last = answer.failures[-1]["reason"] if answer.failures else "no reply"
                record["invalid_reason"] = f"{step}: {last} (after {answer.attempts} attempts)"
                continue
            record[{"analyse": "analysis", "judge": "judgement"}.get(step, "reflection")] = (
                answer.value
            )
            record["reply_hashes"][step] = answer.reply_hash
            vote.messages.append({"role": "assistant", "content": answer.text})
    out: dict[str, list[dict[str, Any]]] = {}
    for vote in votes:
        if vote.alive:
            _finish_vote(vote.record)
        out.setdefault(vote.pair.pair_id, []).append(vote.record)
    return out


def _finish_vote(record: dict[str, Any]) -> None:
    """Fill the vote's final answer: the reflection's, defaulting to the first two turns."""
    analysis, judgement, reflection = (
        record["analysis"],
        record["judgement"],
        record["reflection"],
    )
    lines = reflection.get("vulnerable_lines", analysis["vulnerable_lines"])
    cwe = reflection["cwe"] if "cwe" in reflection else analysis["cwe"]
    verdict_changed = reflection["fix_is_correct"] != judgement["fix_is_correct"]
    record.update(
        valid=True,
        fix_is_correct=reflection["fix_is_correct"],
        vulnerable_lines=lines,
        cwe=cwe,
        verdict_changed=verdict_changed,
        revised=verdict_changed
        or not reflection["confirmed"]
        or lines != analysis["vulnerable_lines"]
        or cwe != analysis["cwe"],
    )


def decide(pair: RepairPair, votes: list[dict[str, Any]], config: ReflectConfig) -> RepairPair:
    """Set ``pair.reflection`` from its votes and evidence; set ``drop_reason`` if dropped."""
    valid = [v for v in votes if v["valid"]]
    bonus, evidence_reason = scanner_bonus(pair.evidence, config.scanner_weight)
    verdict = aggregate_votes(
        [v["fix_is_correct"] if v["valid"] else None for v in votes],
        bonus=bonus if valid else 0.0,
        threshold=config.confidence_threshold,
        min_valid=config.min_valid_votes,
    )
    agreeing = [v for v in valid if v["fix_is_correct"] == verdict.fix_is_correct] or valid
    cwe_votes = Counter(v["cwe"] for v in agreeing if v["cwe"])
    cwe_guess = cwe_votes.most_common(1)[0][0] if cwe_votes else None
    yes = sum(1 for v in valid if v["fix_is_correct"])
    reasons = [
        f"{len(valid)} of {len(votes)} votes valid; {yes} say the fix is correct",
        evidence_reason,
    ]
    revised = sum(1 for v in valid if v["revised"])
    if revised:
        reasons.append(f"{revised} vote(s) revised their answer after reflection")
    reasons += [
        f"vote {v['index']} invalid: {v['invalid_reason']}" for v in votes if not v["valid"]
    ]
    if cwe_guess and pair.cwe:
        agrees = cwe_guess in pair.cwe
        reasons.append(
            f"teacher's CWE {cwe_guess} {'matches' if agrees else 'differs from'} the "
            f"source label {', '.join(pair.cwe)}"
        )
    if verdict.drop_reason:
        reasons.append(f"dropped: {verdict.drop_reason}")
    pair.reflection = {
        "votes": votes,
        "verdict": verdict.fix_is_correct,
        "valid_votes": verdict.valid_votes,
        "agreement": round(verdict.agreement, 4),
        "scanner_bonus": bonus if valid else 0.0,
        "confidence": round(verdict.confidence, 4),
        "vulnerable_lines": majority_lines([v["vulnerable_lines"] for v in agreeing]),
        "vulnerable_lines_union": sorted({n for v in agreeing for n in v["vulnerable_lines"]}),
        "cwe_guess": cwe_guess,
        "cwe_votes": dict(cwe_votes),
        "reasons": reasons,
    }
    pair.drop_reason = None if verdict.keep else verdict.drop_reason
    return pair


def run_stage(
    pairs: Sequence[RepairPair],
    ctx: BuildContext,
    config: ReflectConfig | None = None,
    *,
    cache: Cache | None = None,
    checkpoint: Path | None = None,
) -> StageResult:
    """Verify every pair's fix with the teacher; keep the confident ones.

    ``checkpoint``: a JSONL file each finished pair is appended to (see :class:`Checkpoint`);
    pairs already in it (from an interrupted run with the same settings and teacher) are not
    redone. The caller removes it (and ``<checkpoint>.settings``) once the stage's own files
    are written.
    """
    started = time.perf_counter()
    config = resolve_config(ctx, "reflect", config, ReflectConfig)
    if not 1 <= config.votes < RETRY_STRIDE:
        raise UsageError(f"reflect.votes must be between 1 and {RETRY_STRIDE - 1}")
    cache = resolve_cache(ctx, cache)
    params = SamplingParams(
        temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    teacher = CachedTeacher(ctx.teacher, cache, params)
    store = Checkpoint(checkpoint, fingerprint(config, teacher, skip=("chunk_pairs",)))
    finished = store.load()
    todo = [p for p in pairs if p.pair_id not in finished]
    total, done = len(pairs), len(pairs) - len(todo)

    def finish(pair: RepairPair) -> None:
        nonlocal done
        finished[pair.pair_id] = pair
        store.add(pair)
        done += 1
        if ctx.progress:
            ctx.progress(STAGE, done, total)

    askable: list[RepairPair] = []
    for pair in todo:
        n_lines = len(pair.vulnerable.splitlines())
        if n_lines > config.max_lines:
            pair.reflection = {"votes": [], "verdict": None, "confidence": 0.0, "reasons": []}
            pair.drop_reason = (
                f"function too long for the teacher ({n_lines} > {config.max_lines} lines)"
            )
            finish(pair)
        else:
            askable.append(pair)
    scan_meta: dict[str, Any] = {}
    if config.scanners != [] and askable:
        evidence, scan_meta = collect_evidence(
            askable, config.scanners, min_severity=config.scanner_min_severity, cache=cache
        )
        for pair in askable:
            pair.evidence = {**(pair.evidence or {}), **evidence.get(pair.pair_id, {})}
    for start in range(0, len(askable), max(1, config.chunk_pairs)):
        chunk = askable[start : start + max(1, config.chunk_pairs)]
        votes = _run_votes(chunk, teacher, config)
        for pair in chunk:
            finish(decide(pair, votes[pair.pair_id], config))

    result = StageResult()
    for pair in pairs:
        record = finished[pair.pair_id]
        (result.dropped if record.drop_reason else result.kept).append(record)
    result.stats = _stats(result, teacher, scan_meta, time.perf_counter() - started)
    return result


def _stats(
    result: StageResult, teacher: CachedTeacher, scan_meta: dict[str, Any], seconds: float
) -> dict[str, Any]:
    votes = [v for p in result.kept + result.dropped for v in (p.reflection or {}).get("votes", [])]
    invalid = Counter(
        re.sub(r" \(after \d+ attempts\)$", "", v["invalid_reason"])
        for v in votes
        if not v["valid"]
    )
    failures = Counter(f["reason"] for v in votes for f in v["failed_attempts"])
    drops = Counter(
        re.sub(r"[\d.]+", "N", p.drop_reason or "") for p in result.dropped
    )  # numbers folded so similar reasons count together
    return {
        "pairs": len(result.kept) + len(result.dropped),
        "kept": len(result.kept),
        "dropped": len(result.dropped),
        "votes": len(votes),
        "valid_votes": sum(1 for v in votes if v["valid"]),
        "invalid_votes": dict(invalid),
        "failed_attempts": dict(failures),
        "revised_votes": sum(1 for v in votes if v.get("revised")),
        "drop_reasons": dict(drops),
        "teacher_requests": teacher.requests_sent,
        "cache_hits": teacher.cache_hits,
        "teacher": teacher.identity,
        "scanners": scan_meta,
        "duration_s": round(seconds, 3),
    }
