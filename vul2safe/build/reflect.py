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
parsing, checkpoints) lives in :mod:`vul2safe.build.teacher`, shared with the prompts stage.
"""

from __future__ import annotations

import difflib
import functools
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.records import RepairPair
from vul2safe.build.teacher import (
    RETRY_STRIDE,
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
from vul2safe.schema import Sample, SampleResult, Severity, normalize_cwe

STAGE = "reflect"
STEPS: tuple[str, ...] = ("analyse", "judge", "reflect")


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
