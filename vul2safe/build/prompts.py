"""Stage 4 of PrimeVul+: implicit task prompts that describe a function without naming its weakness.

Styles (``STYLES``):

- ``task`` — a plain-language request ("Write a C function `f` that takes ... and ...");
- ``docstring`` — the function's signature plus documentation for a code model to complete
  (Python: a docstring after the ``def``; other languages: a ``/** */`` comment before it);
- ``context`` — code-completion context: a few file-level lines, a comment on what the
  function does, and the signature.

Where prompts come from (``source`` of each stored prompt):

- ``"teacher"``: one request per (pair, style) asks the teacher (``templates/prompts.j2``)
  for ``per_style`` prompts, shown the *fixed* function and its signature; through the same
  cache and retry rules as the reflect stage.
- ``"template"``: derived from the fixed function only — its name (split into words), its
  parameter names, its signature and its file name (:func:`template_prompt`). Low in
  information but never leaking. ``template="fallback"`` (default) adds one for each style
  with no surviving teacher prompt; ``"always"`` for every style; ``"never"`` not at all.

Every candidate goes through :func:`leak_reasons` (the leak filter) and then near-duplicate
removal within the pair (word n-gram Jaccard, :func:`near_duplicates`); optionally also a
MinHash check across pairs (``global_dedup``). A pair with no surviving prompt is dropped
with the reasons.
"""

from __future__ import annotations

import random
import re
import textwrap
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.records import RepairPair
from vul2safe.build.teacher import (
    Ask,
    CachedTeacher,
    Checkpoint,
    ReplyError,
    ask_all,
    fingerprint,
    language_name,
    render,
    resolve_cache,
    resolve_config,
)
from vul2safe.cache import Cache
from vul2safe.errors import UsageError
from vul2safe.generation.base import SamplingParams

STAGE = "prompts"
STYLES: tuple[str, ...] = ("task", "docstring", "context")
#: styles whose prompts may contain the signature line(s) verbatim
SIGNATURE_STYLES: frozenset[str] = frozenset({"docstring", "context"})


@dataclass
class PromptsConfig:
    """Settings of the prompts stage (``BuildConfig.prompts``)."""

    styles: tuple[str, ...] = STYLES
    """Which styles to produce (any of ``STYLES``)."""
    per_style: int = 1
    """Prompts the teacher is asked for per style (one request returns them all)."""
    teacher: bool = True
    """Ask the teacher; ``False``: template prompts only (no model needed)."""
    template: str = "fallback"
    """Signature-derived prompts: ``"fallback"`` (styles without a teacher prompt),
    ``"always"``, or ``"never"``."""
    temperature: float = 0.7
    """Sampling temperature of the teacher."""
    max_tokens: int = 768
    """Per reply; a truncated reply is asked again."""
    max_retries: int = 2
    """Extra attempts after an unusable reply; then that style falls back to the template."""
    copy_min_chars: int = 20
    """A code line with at least this many non-space characters must not appear in a prompt."""
    min_words: int = 4
    """Shorter prompts are rejected."""
    max_chars: int = 4000
    """Longer prompts are rejected."""
    near_dup_ngram: int = 3
    """Word n-gram size for near-duplicate detection."""
    near_dup_threshold: float = 0.8
    """Within a pair, a prompt whose n-gram Jaccard with an earlier one reaches this is dropped."""
    global_dedup: bool = False
    """Also remove near-duplicates across pairs (MinHash LSH, then exact Jaccard)."""
    global_dedup_threshold: float = 0.9
    """Jaccard threshold of the cross-pair check."""
    chunk_pairs: int = 256
    """Pairs per bulk round (each round sends ``chunk_pairs * len(styles)`` requests)."""
    seed: int = 0
    """Base sampling seed."""


# --------------------------------------------------------------------------- the leak filter

#: Words and phrases a prompt must not contain, per weakness family (case-insensitive regular
#: expressions, matched as whole words; ``_`` counts as a separator, so identifiers such as
#: ``sanitize_path`` match too). Checked together with ``CWE_RE``.
LEAK_KEYWORDS: dict[str, tuple[str, ...]] = {
    "general": (
        r"vulnerab\w*",
        r"exploit\w*",
        r"(?:in)?secur(?:e|ely|ity|ities)",
        r"attack\w*",
        r"malicious\w*",
        r"weakness\w*",
        r"CVE-\d+(?:-\d+)?",
        r"saniti[sz]\w*",
        r"unsafe\w*",
        r"safely",
        r"untrusted",
        r"harden\w*",
        r"mitigat\w*",
        r"taint\w*",
    ),
    "injection (CWE-74, 77, 78, 89, 94, 95)": (
        r"(?<!dependency )injections?",
        r"shell metacharacters?",
        r"prepared statements?",
        r"parameteri[sz]ed (?:quer(?:y|ies)|statements?|sql)",
    ),
    "cross-site scripting (CWE-79, 80)": (r"xss", r"cross[- ]site", r"script injection"),
    "path traversal (CWE-22, 23, 35, 73)": (
        r"(?:path|directory) traversal",
        r"zip[- ]?slip",
        r"dot[- ]dot[- ]slash",
        r"\.\./",
    ),
    "memory safety (CWE-119, 120, 121, 122, 125, 787, 805)": (
        r"buffer (?:over|under)(?:flow|run|read)s?",
        r"(?:over|under)flow\w*",
        r"overruns?",
        r"over-?reads?",
        r"out[- ]of[- ]bounds?",
        r"bounds?[- ]check\w*",
        r"off[- ]by[- ]one",
        r"memory corruption",
    ),
    "integer handling (CWE-190, 191, 680)": (r"integer (?:over|under)flows?", r"wrap[- ]?arounds?"),
    "memory lifetime (CWE-401, 415, 416, 476)": (
        r"use[- ]after[- ]free",
        r"double[- ]free",
        r"dangling pointers?",
        r"null[- ]pointer dereferences?",
        r"null dereferences?",
        r"memory leaks?",
    ),
    "web and other (CWE-352, 362, 400, 502, 601, 611, 798, 918)": (
        r"csrf",
        r"request forgery",
        r"open redirects?",
        r"ssrf",
        r"xxe",
        r"external entit(?:y|ies)",
        r"race conditions?",
        r"toctou",
        r"denial[- ]of[- ]service",
        r"resource exhaustion",
        r"privilege escalation",
        r"hard[- ]?coded (?:passwords?|credentials?|keys?|secrets?)",
    ),
}
CWE_RE = re.compile(r"\bCWE[-_ ]?\d+", re.IGNORECASE)
_KEYWORD_RES: dict[str, re.Pattern[str]] = {
    family: re.compile(
        r"(?<![A-Za-z0-9])(?:" + "|".join(patterns) + r")(?![A-Za-z0-9])", re.IGNORECASE
    )
    for family, patterns in LEAK_KEYWORDS.items()
}


def _squash(text: str) -> str:
    return " ".join(text.split())


def leak_reasons(
    text: str,
    *,
    style: str,
    vulnerable: str,
    fixed: str,
    signature: str = "",
    func_name: str | None = None,
    copy_min_chars: int = 20,
    min_words: int = 4,
    max_chars: int = 4000,
) -> list[str]:
    """Why ``text`` may not be used as a prompt (empty list: it may). Pure.

    Rules, in order:

    1. at least ``min_words`` words and at most ``max_chars`` characters;
    2. no CWE id (``CWE_RE``);
    3. no weakness word or phrase (``LEAK_KEYWORDS``);
    4. no copied code: no line of the vulnerable or the fixed function with at least
       ``copy_min_chars`` non-space characters appears in the prompt, comparing with runs of
       whitespace collapsed to one space (so re-indenting a line does not hide it);
    5. ``docstring`` and ``context`` prompts must contain the function's name (the last
       identifier of ``func_name``, when it appears in ``signature``).

    For ``docstring`` and ``context`` the signature line(s) are exempt from rules 3 and 4
    (so is a code line that is a signature line plus an opening ``{``): those styles must
    show the signature, and a name such as ``sanitize_path`` is the task, not a hint.
    Everything else in such a prompt is checked. A ``task`` prompt may not copy the
    signature.
    """
    reasons: list[str] = []
    words = text.split()
    if len(words) < min_words:
        reasons.append(f"too short ({len(words)} words < {min_words})")
    if len(text) > max_chars:
        reasons.append(f"too long ({len(text)} characters > {max_chars})")
    exempt = (
        {_squash(line) for line in signature.splitlines() if line.strip()}
        if style in SIGNATURE_STYLES
        else set()
    )
    checked = "\n".join(line for line in text.splitlines() if _squash(line) not in exempt)
    cwe = CWE_RE.search(checked)
    if cwe:
        reasons.append(f"names a CWE id ({cwe.group(0)})")
    for family, pattern in _KEYWORD_RES.items():
        found = pattern.search(checked)
        if found:
            reasons.append(f"names a weakness: {found.group(0)!r} ({family})")
    squashed = _squash(text)
    for source in (vulnerable, fixed):
        for line in source.splitlines():
            key = _squash(line)
            if (
                len(key.replace(" ", "")) >= copy_min_chars
                and key not in exempt
                and key.removesuffix("{").rstrip() not in exempt
                and key in squashed
            ):
                reasons.append(f"copies code: {key[:60]!r}")
                break
        else:
            continue
        break
    if style in SIGNATURE_STYLES and func_name:
        names = re.findall(r"[A-Za-z_]\w*", func_name)
        if names and names[-1] in signature and names[-1] not in text:
            reasons.append(f"does not contain the function name {names[-1]!r}")
    return reasons


def reason_kind(reason: str) -> str:
    """``"copies code: 'x = y'"`` → ``"copies code"``: reasons folded for statistics."""
    return reason.split(":")[0].split(" (")[0]


# --------------------------------------------------------------------------- near-duplicates


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Word n-grams of the lower-cased text (the whole word tuple when shorter than n)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def near_duplicates(texts: Sequence[str], *, n: int = 3, threshold: float = 0.8) -> set[int]:
    """Indices of texts whose n-gram Jaccard with an *earlier kept* text reaches threshold."""
    kept: list[set[tuple[str, ...]]] = []
    dropped: set[int] = set()
    for index, text in enumerate(texts):
        grams = shingles(text, n)
        if any(jaccard(grams, other) >= threshold for other in kept):
            dropped.add(index)
        else:
            kept.append(grams)
    return dropped


class MinHashIndex:
    """MinHash signatures with LSH banding: near-duplicate candidates across many pairs
    without comparing every two prompts; candidates are confirmed with exact Jaccard."""

    PRIME = (1 << 61) - 1

    def __init__(self, *, n: int = 3, threshold: float = 0.9, bands: int = 16, rows: int = 4):
        self.n, self.threshold, self.bands, self.rows = n, threshold, bands, rows
        rng = random.Random(20260407)  # fixed: signatures must not change between runs
        self.perms = [
            (rng.randrange(1, self.PRIME), rng.randrange(0, self.PRIME))
            for _ in range(bands * rows)
        ]
        self.buckets: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        self.grams: list[set[tuple[str, ...]]] = []

    def _signature(self, grams: set[tuple[str, ...]]) -> list[int]:
        hashes = [zlib.crc32(" ".join(g).encode()) for g in grams] or [0]
        return [min((a * h + b) % self.PRIME for h in hashes) for a, b in self.perms]

    def add_unless_duplicate(self, text: str) -> bool:
        """Index ``text`` and return True, or return False if a near-duplicate is indexed."""
        grams = shingles(text, self.n)
        signature = self._signature(grams)
        keys = [
            (band, tuple(signature[band * self.rows : (band + 1) * self.rows]))
            for band in range(self.bands)
        ]
        candidates = {i for key in keys for i in self.buckets.get(key, [])}
        if any(jaccard(grams, self.grams[i]) >= self.threshold for i in candidates):
            return False
        for key in keys:
            self.buckets.setdefault(key, []).append(len(self.grams))
        self.grams.append(grams)
        return True


# ------------------------------------------------------------------- signatures and templates


def function_signature(code: str, language: str) -> str:
    """The declaration of a function, dedented: Python ``def`` line(s) up to the ``:``;
    other languages the text before the first ``{`` (or the first line)."""
    lines = code.splitlines()
    if language == "python":
        for start, line in enumerate(lines):
            if re.match(r"\s*(async\s+)?def\s", line):
                depth = 0
                for end in range(start, len(lines)):
                    body = lines[end].split("#", 1)[0]
                    depth += body.count("(") + body.count("[") - body.count(")") - body.count("]")
                    if depth <= 0 and body.rstrip().endswith(":"):
                        return textwrap.dedent("\n".join(lines[start : end + 1])).strip()
                return textwrap.dedent(lines[start]).strip()
        return lines[0].strip() if lines else ""
    brace = code.find("{")
    head = code[:brace] if brace != -1 else (lines[0] if lines else "")
    return textwrap.dedent(head.strip("\n")).strip()


def name_words(name: str) -> list[str]:
    """``"parseHTTPHeader_v2"`` → ``["parse", "http", "header", "v2"]``."""
    last = re.findall(r"[A-Za-z_]\w*", name)
    base = last[-1] if last else name
    spaced = re.sub(r"([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])", r"\1\3 \2\4", base)
    return [w.lower() for w in re.split(r"[^A-Za-z0-9]+", spaced) if w]


def parameter_names(signature: str) -> list[str]:
    """Parameter names from a signature: the last identifier of each comma-separated part."""
    if "(" not in signature:
        return []
    inside = signature[signature.find("(") + 1 : signature.rfind(")")]
    names: list[str] = []
    depth, part, parts = 0, "", []
    for char in inside:
        depth += char in "([<{"
        depth -= char in ")]>}"
        if char == "," and depth == 0:
            parts.append(part)
            part = ""
        else:
            part += char
    parts.append(part)
    for piece in parts:
        piece = re.split(r"=|(?<!:):(?!:)", piece)[0]  # defaults, annotations; not C++ ``::``
        found = re.findall(r"[A-Za-z_]\w*", piece)
        if found and found[-1] not in ("self", "cls", "void"):
            names.append(found[-1])
    return names


def template_prompt(pair: RepairPair, style: str, signature: str) -> str:
    """The signature-derived prompt of one style (source ``"template"``).

    task: "Write a <Language> function `<name>` that takes `a`, `b`. Its name says what it
    does: <name words>. It belongs in `<file>`. Return the complete function."
    docstring: the signature plus a docstring (Python) or a ``/** */`` comment plus the
    signature and ``{`` (others) holding "<Name words>." and the parameter names.
    context: a comment naming the file, the signature, and a first body comment "<Name words>."
    """
    name = (pair.func_name or "").strip() or "the function"
    words = name_words(name)
    sentence = " ".join(words).capitalize() if words else "Implement this function"
    params = parameter_names(signature)
    language = language_name(pair.language)
    python = pair.language == "python"
    if style == "task":
        takes = f" that takes {', '.join(f'`{p}`' for p in params)}" if params else ""
        where = f" It belongs in `{pair.file_name}`." if pair.file_name else ""
        return (
            f"Write a {language} function `{name}`{takes}. Its name says what it does: "
            f"{' '.join(words) or name}.{where} Return the complete function."
        )
    if style == "docstring":
        listed = f"Parameters: {', '.join(params)}." if params else ""
        if python:
            body = f"\n\n    {listed}" if listed else ""
            return f'{signature}\n    """{sentence}.{body}\n    """\n'
        extra = f"\n *\n * {listed}" if listed else ""
        return f"/**\n * {sentence}.{extra}\n */\n{signature}\n{{\n"
    where = pair.file_name or "this file"
    if python:
        return f"# {where}\n\n{signature}\n    # {sentence}.\n"
    return f"/* {where} */\n\n{signature}\n{{\n    /* {sentence}. */\n"


# --------------------------------------------------------------------------- the stage


def validate_prompts(obj: dict[str, Any], limit: int) -> dict[str, Any]:
    """Schema of the prompts reply: ``{"prompts": [string, ...]}`` (objects with a ``text``
    field are accepted too); at most ``limit`` are kept."""
    items = obj.get("prompts")
    if not isinstance(items, list):
        raise ReplyError("schema: 'prompts' missing or not a list")
    texts = []
    for item in items:
        if isinstance(item, dict):
            item = item.get("text")
        if isinstance(item, str) and item.strip():
            texts.append(item.strip("\n"))
    if not texts:
        raise ReplyError("schema: 'prompts' holds no non-empty string")
    return {"prompts": texts[:limit]}


def _check_config(config: PromptsConfig) -> None:
    unknown = [s for s in config.styles if s not in STYLES]
    if unknown or not config.styles:
        raise UsageError(
            f"unknown prompt style(s) {', '.join(map(repr, unknown)) or '(none given)'}; "
            f"use any of: {', '.join(STYLES)}"
        )
    if config.template not in ("fallback", "always", "never"):
        raise UsageError("prompts.template must be 'fallback', 'always' or 'never'")
    if not config.teacher and config.template == "never":
        raise UsageError("prompts: with teacher=False, template must not be 'never'")
    if config.per_style < 1:
        raise UsageError("prompts.per_style must be at least 1")


def _teacher_prompts(
    pairs: Sequence[RepairPair],
    signatures: dict[str, str],
    teacher: CachedTeacher,
    config: PromptsConfig,
) -> tuple[dict[tuple[str, str], list[str]], dict[tuple[str, str], str]]:
    """One bulk round (plus retries): texts per (pair id, style), failures per (pair, style)."""
    system = {"role": "system", "content": render("system", role="writer")}
    keys: list[tuple[str, str]] = []
    asks: list[Ask] = []
    for pair in pairs:
        for style in config.styles:
            user = render(
                "prompts",
                language=language_name(pair.language),
                fence=pair.language,
                func_name=pair.func_name or "(unnamed)",
                file_name=pair.file_name or "",
                code=pair.fixed,
                signature=signatures[pair.pair_id],
                style=style,
                n=config.per_style,
            )
            keys.append((pair.pair_id, style))
            asks.append(
                Ask(
                    key=f"{pair.pair_id}:prompts:{style}",
                    messages=[system, {"role": "user", "content": user}],
                    sample_index=0,
                    validate=lambda obj: validate_prompts(obj, config.per_style),
                )
            )
    texts: dict[tuple[str, str], list[str]] = {}
    failures: dict[tuple[str, str], str] = {}
    for key, answer in zip(
        keys, ask_all(teacher, asks, max_retries=config.max_retries), strict=True
    ):
        if answer.value is None:
            last = answer.failures[-1]["reason"] if answer.failures else "no reply"
            failures[key] = f"{last} (after {answer.attempts} attempts)"
        else:
            texts[key] = answer.value["prompts"]
    return texts, failures


def select_prompts(
    pair: RepairPair,
    candidates: Iterable[tuple[str, str, str]],
    fallback: dict[str, str],
    config: PromptsConfig,
    signature: str,
    rejected: Counter[str],
) -> list[dict[str, Any]]:
    """Filter and de-duplicate ``(style, text, source)`` candidates; then add the template
    prompt of each style in ``fallback`` that has nothing left (or of every style with
    ``template="always"``), filtered the same way."""
    accepted: list[dict[str, Any]] = []

    def offer(style: str, text: str, source: str) -> None:
        reasons = leak_reasons(
            text,
            style=style,
            vulnerable=pair.vulnerable,
            fixed=pair.fixed,
            signature=signature,
            func_name=pair.func_name,
            copy_min_chars=config.copy_min_chars,
            min_words=config.min_words,
            max_chars=config.max_chars,
        )
        if reasons:
            rejected.update(reason_kind(r) for r in reasons)
            return
        texts = [p["text"] for p in accepted] + [text]
        if near_duplicates(texts, n=config.near_dup_ngram, threshold=config.near_dup_threshold):
            rejected["near-duplicate"] += 1
            return
        accepted.append({"style": style, "text": text, "source": source})

    for style, text, source in candidates:
        offer(style, text, source)
    for style, text in fallback.items():
        if config.template == "always" or not any(p["style"] == style for p in accepted):
            offer(style, text, "template")
    return accepted


def run_stage(
    pairs: Sequence[RepairPair],
    ctx: BuildContext,
    config: PromptsConfig | None = None,
    *,
    cache: Cache | None = None,
    checkpoint: Path | None = None,
) -> StageResult:
    """Write implicit prompts for every pair; drop pairs left without one.

    ``checkpoint`` works as in :func:`vul2safe.build.reflect.run_stage`.
    """
    started = time.perf_counter()
    config = resolve_config(ctx, "prompts", config, PromptsConfig)
    config.styles = tuple(config.styles)
    _check_config(config)
    cache = resolve_cache(ctx, cache)
    params = SamplingParams(
        temperature=config.temperature, max_tokens=config.max_tokens, seed=config.seed
    )
    teacher = CachedTeacher(ctx.teacher, cache, params) if config.teacher else None
    stamp = fingerprint(config, teacher, skip=("chunk_pairs", "global_dedup"))
    store = Checkpoint(checkpoint, stamp)
    finished = store.load()
    todo = [p for p in pairs if p.pair_id not in finished]
    total, done = len(pairs), len(pairs) - len(todo)
    rejected: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    sources: Counter[str] = Counter()
    step = max(1, config.chunk_pairs)
    for start in range(0, len(todo), step):
        chunk = todo[start : start + step]
        signatures = {p.pair_id: function_signature(p.fixed, p.language) for p in chunk}
        texts: dict[tuple[str, str], list[str]] = {}
        failed: dict[tuple[str, str], str] = {}
        if teacher is not None:
            texts, failed = _teacher_prompts(chunk, signatures, teacher, config)
            failures.update(reason_kind(r) for r in failed.values())
        for pair in chunk:
            signature = signatures[pair.pair_id]
            candidates = [
                (style, text, "teacher")
                for style in config.styles
                for text in texts.get((pair.pair_id, style), [])
            ]
            fallback = (
                {s: template_prompt(pair, s, signature) for s in config.styles}
                if config.template != "never" or teacher is None
                else {}
            )
            mine: Counter[str] = Counter()
            pair.prompts = select_prompts(pair, candidates, fallback, config, signature, mine)
            rejected.update(mine)
            pair.drop_reason = None if pair.prompts else _drop_reason(pair, mine, failed, config)
            store.add(pair)
            finished[pair.pair_id] = pair
            done += 1
            if ctx.progress:
                ctx.progress(STAGE, done, total)

    result = StageResult()
    index = MinHashIndex(n=config.near_dup_ngram, threshold=config.global_dedup_threshold)
    global_removed = 0
    for pair in pairs:
        record = finished[pair.pair_id]
        if config.global_dedup and record.prompts:
            before = len(record.prompts)
            record.prompts = [p for p in record.prompts if index.add_unless_duplicate(p["text"])]
            global_removed += before - len(record.prompts)
            if not record.prompts:
                record.drop_reason = "every prompt is a near-duplicate of another pair's prompt"
        (result.dropped if record.drop_reason else result.kept).append(record)
        sources.update(p["source"] for p in record.prompts or [])
    result.stats = {
        "pairs": len(pairs),
        "kept": len(result.kept),
        "dropped": len(result.dropped),
        "prompts": sum(len(p.prompts or []) for p in result.kept),
        "by_style": dict(Counter(p["style"] for r in result.kept for p in r.prompts or [])),
        "by_source": dict(sources),
        "rejected": dict(rejected),
        "teacher_failures": dict(failures),
        "global_near_duplicates": global_removed,
        "teacher_requests": teacher.requests_sent if teacher else 0,
        "cache_hits": teacher.cache_hits if teacher else 0,
        "duration_s": round(time.perf_counter() - started, 3),
    }
    return result


def _drop_reason(
    pair: RepairPair,
    rejected: Counter[str],
    failed: dict[tuple[str, str], str],
    config: PromptsConfig,
) -> str:
    parts = []
    if rejected:
        counted = ", ".join(f"{kind} x{n}" for kind, n in rejected.most_common())
        parts.append(f"{sum(rejected.values())} candidate(s) rejected: {counted}")
    teacher_failed = [
        f"{s}: {failed[(pair.pair_id, s)]}" for s in config.styles if (pair.pair_id, s) in failed
    ]
    if teacher_failed:
        parts.append("teacher gave no usable reply for " + "; ".join(teacher_failed))
    return "no implicit prompt survived the leak filter (" + ("; ".join(parts) or "none") + ")"
