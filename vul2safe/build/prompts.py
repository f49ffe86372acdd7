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

Every candidate goes through :func:`~vul2safe.build.leaks.leak_reasons` (the leak filter,
:mod:`vul2safe.build.leaks`) and then near-duplicate removal within the pair (word n-gram
Jaccard, :func:`~vul2safe.build.similarity.near_duplicates`); optionally also a MinHash
check across pairs (``global_dedup``, the LSH index shared with the assemble stage). A pair
with no surviving prompt is dropped with the reasons. Signatures and template prompts:
:mod:`vul2safe.build.signatures`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.leaks import (
    CWE_RE,
    LEAK_KEYWORDS,
    SIGNATURE_STYLES,
    leak_reasons,
    reason_kind,
)
from vul2safe.build.records import RepairPair
from vul2safe.build.replies import validate_reply
from vul2safe.build.signatures import (
    function_signature,
    name_words,
    parameter_names,
    template_prompt,
)
from vul2safe.build.similarity import MinHashLSH, hash32, jaccard, near_duplicates, shingles
from vul2safe.build.teacher import (
    Ask,
    CachedTeacher,
    Checkpoint,
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

# the leak filter, signatures and similarity live in their own modules; re-exported here
__all__ = [
    "CWE_RE",
    "LEAK_KEYWORDS",
    "SIGNATURE_STYLES",
    "STYLES",
    "MinHashIndex",
    "PromptsConfig",
    "function_signature",
    "jaccard",
    "leak_reasons",
    "name_words",
    "near_duplicates",
    "parameter_names",
    "reason_kind",
    "run_stage",
    "select_prompts",
    "shingles",
    "template_prompt",
    "validate_prompts",
]


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


class MinHashIndex:
    """Prompts across pairs (``global_dedup``): word ``n``-gram sets in the shared
    :class:`~vul2safe.build.similarity.MinHashLSH` (16 bands of 4), confirmed by exact
    Jaccard."""

    def __init__(
        self, *, n: int = 3, threshold: float = 0.9, bands: int = 16, rows: int = 4
    ) -> None:
        self.n = n
        self.lsh = MinHashLSH(threshold, num_perm=bands * rows, rows=rows, seed=20260407)

    def add_unless_duplicate(self, text: str) -> bool:
        """Index ``text`` and return True, or return False if a near-duplicate is indexed."""
        grams = {hash32(" ".join(g)) for g in shingles(text, self.n)}
        return self.lsh.find_or_add(grams) is None


# --------------------------------------------------------------------------- the stage


def validate_prompts(obj: dict[str, Any], limit: int) -> dict[str, Any]:
    """The prompts reply (:class:`~vul2safe.build.replies.PromptsReply`); at most ``limit``
    prompts are kept."""
    texts = validate_reply("prompts", obj)["prompts"]
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
