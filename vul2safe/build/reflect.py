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

The teacher machinery (:class:`~vul2safe.build.teacher.CachedTeacher`, ``ask_all``, reply
parsing, checkpoints) lives in :mod:`vul2safe.build.teacher`, shared with the prompts stage;
the reply schemas in :mod:`vul2safe.build.replies`, the vote arithmetic in
:mod:`vul2safe.build.votes`, the scanner evidence in :mod:`vul2safe.build.evidence`.
"""

from __future__ import annotations

import difflib
import functools
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.evidence import collect_evidence
from vul2safe.build.records import RepairPair
from vul2safe.build.replies import validate_reply
from vul2safe.build.teacher import (
    RETRY_STRIDE,
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
from vul2safe.build.votes import Verdict, aggregate_votes, majority_lines, scanner_bonus
from vul2safe.cache import Cache
from vul2safe.errors import UsageError
from vul2safe.generation.base import SamplingParams

STAGE = "reflect"
STEPS: tuple[str, ...] = ("analyse", "judge", "reflect")

__all__ = [
    "STEPS",
    "ReflectConfig",
    "Verdict",
    "aggregate_votes",
    "collect_evidence",
    "conversation_turns",
    "decide",
    "majority_lines",
    "number_lines",
    "run_stage",
    "scanner_bonus",
    "validate_analysis",
    "validate_judgement",
    "validate_reflection",
]


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


# --------------------------------------------------------------------------- turns and replies


def number_lines(code: str) -> str:
    """``"   1 | first line"``: line numbers let the teacher name lines without counting."""
    return "\n".join(f"{i:4d} | {line}" for i, line in enumerate(code.splitlines(), 1))


def validate_analysis(obj: dict[str, Any], n_lines: int) -> dict[str, Any]:
    """Turn 1 (``analyse.j2``), :class:`~vul2safe.build.replies.AnalysisReply`."""
    return validate_reply("analyse", obj, n_lines=n_lines)


def validate_judgement(obj: dict[str, Any]) -> dict[str, Any]:
    """Turn 2 (``judge.j2``), :class:`~vul2safe.build.replies.JudgementReply`."""
    return validate_reply("judge", obj)


def validate_reflection(obj: dict[str, Any], n_lines: int) -> dict[str, Any]:
    """Turn 3 (``reflect.j2``), :class:`~vul2safe.build.replies.ReflectionReply`."""
    return validate_reply("reflect", obj, n_lines=n_lines)


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
                validate=functools.partial(  # the judge's reply has no lines to range-check
                    validate_reply, step, n_lines=len(vote.pair.vulnerable.splitlines())
                ),
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
