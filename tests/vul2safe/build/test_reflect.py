"""The reflect stage: reply parsing, voting math, and the protocol against a scripted teacher.

The teacher is a real HTTP server (``scripted_teacher``) reached through the real ``openai``
backend; pairs are real SVEN fixes. What is asserted is the protocol: retries, drop reasons,
caching, checkpoints, bulk requests — never the quality of the scripted answers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from scripted_teacher import TeacherServer, open_session, start_teacher, sven_pairs

from vul2safe.build import BuildContext
from vul2safe.build.records import RepairPair, read_pairs
from vul2safe.build.reflect import (
    ReflectConfig,
    aggregate_votes,
    majority_lines,
    run_stage,
    scanner_bonus,
    validate_analysis,
    validate_judgement,
    validate_reflection,
)
from vul2safe.build.teacher import Ask, CachedTeacher, ReplyError, ask_all, parse_json_reply
from vul2safe.cache import Cache
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import Completion, GenerationRequest, SamplingParams, Session

# --------------------------------------------------------------------------- reply parsing


def test_parse_takes_the_last_fenced_json_block() -> None:
    text = 'Reasoning {"x": 0}.\n```json\n{"a": 1}\n```\nthen\n```json\n{"a": 2,}\n```'
    assert parse_json_reply(text, "stop") == {"a": 2}  # trailing comma tolerated


def test_parse_falls_back_to_a_bare_object() -> None:
    assert parse_json_reply('Answer: {"fix_is_correct": false} done') == {"fix_is_correct": False}


@pytest.mark.parametrize(
    ("text", "finish", "reason"),
    [
        ('```json\n{"a": 1}\n```', "length", "truncated"),
        ("", "stop", "empty"),
        ("   \n", "stop", "empty"),
        ("I'm sorry, but I can't help with that.", "stop", "refusal"),
        ('```json\n{"a": 1, "b": \n```', "stop", "malformed JSON"),
        ('{"a": [1, 2', None, "malformed JSON"),
        ("Looks good to me, ship it.", "stop", "off-format"),
        ("```json\n[1, 2]\n```", "stop", "malformed JSON"),
    ],
)
def test_parse_classifies_unusable_replies(text: str, finish: str | None, reason: str) -> None:
    with pytest.raises(ReplyError) as info:
        parse_json_reply(text, finish)
    assert reason in info.value.reason


def test_validators_coerce_and_reject() -> None:
    analysis = validate_analysis(
        {
            "is_vulnerable": "yes",
            "root_cause": " copies too much ",
            "vulnerable_lines": [3, "2", 99, 3],
            "cwe": "cwe-0787: Out-of-bounds Write",
        },
        n_lines=10,
    )
    assert analysis == {
        "is_vulnerable": True,
        "root_cause": "copies too much",
        "vulnerable_lines": [2, 3],  # 99 is out of range, duplicates merged
        "cwe": "CWE-787",
    }
    with pytest.raises(ReplyError, match="vulnerable_lines"):
        validate_analysis(
            {"is_vulnerable": True, "root_cause": "x", "vulnerable_lines": ["a"]}, n_lines=5
        )
    with pytest.raises(ReplyError, match="fix_is_correct"):
        validate_judgement({"fix_is_correct": "maybe"})
    reflection = validate_reflection({"confirmed": True, "fix_is_correct": False}, n_lines=5)
    assert "vulnerable_lines" not in reflection and reflection["revision"] == ""


# --------------------------------------------------------------------------- voting math


@pytest.mark.parametrize(
    ("votes", "bonus", "threshold", "verdict", "confidence", "keep"),
    [
        ([True, True, True], 0.0, 0.66, True, 1.0, True),
        ([True, True, False], 0.0, 0.66, True, 2 / 3, True),  # 0.667 >= 0.66
        ([True, True, False], -0.15, 0.66, True, 2 / 3 - 0.15, False),
        ([True, True, False], 0.15, 0.8, True, 2 / 3 + 0.15, True),
        ([True, True, True], 0.15, 0.66, True, 1.0, True),  # clipped at 1
        ([True, False, False], 0.15, 0.66, False, 2 / 3 + 0.15, False),
        ([True, None, None], 0.0, 0.66, True, 1.0, True),  # one valid vote agrees with itself
        ([True, False, None], 0.0, 0.66, None, 0.5, False),  # tie
        ([None, None, None], 0.15, 0.66, None, 0.0, False),
    ],
)
def test_aggregate_votes(
    votes: list[bool | None],
    bonus: float,
    threshold: float,
    verdict: bool | None,
    confidence: float,
    keep: bool,
) -> None:
    result = aggregate_votes(votes, bonus=bonus, threshold=threshold)
    assert result.fix_is_correct is verdict
    assert result.confidence == pytest.approx(confidence)
    assert result.keep is keep
    assert (result.drop_reason is None) is keep


def test_aggregate_reasons_and_min_valid() -> None:
    assert "incorrect (2 of 3" in (aggregate_votes([False, False, True]).drop_reason or "")
    assert "tied" in (aggregate_votes([True, False]).drop_reason or "")
    assert "no valid" in (aggregate_votes([None]).drop_reason or "")
    low = aggregate_votes([True, True, False], bonus=-0.15)
    assert "confidence 0.52 below threshold 0.66" in (low.drop_reason or "")
    assert "need 2" in (aggregate_votes([True, None], min_valid=2).drop_reason or "")


def test_scanner_bonus_rules() -> None:
    def ev(before: bool | None, after: bool | None) -> dict[str, Any]:
        return {"scanner": {"before_flagged": before, "after_flagged": after}}

    assert scanner_bonus(ev(True, False), 0.15)[0] == 0.15
    assert scanner_bonus(ev(True, True), 0.15)[0] == -0.15
    assert scanner_bonus(ev(False, True), 0.15)[0] == -0.15
    assert scanner_bonus(ev(False, False), 0.15)[0] == 0.0
    assert scanner_bonus(ev(None, None), 0.15)[0] == 0.0
    assert scanner_bonus(None, 0.15)[0] == 0.0


def test_majority_lines() -> None:
    assert majority_lines([[1, 2], [2, 3], [2, 5]]) == [2]
    assert majority_lines([[1, 2], [2, 3]]) == [1, 2, 3]  # half of two is one
    assert majority_lines([]) == []


class UnitSession(Session):
    """A stand-in backend for the bulk/isolation logic only: answers ``{"ok": true}``, and
    gives up (like a backend after its retries) on requests whose key contains ``poison``,
    which ends the whole batch."""

    def __init__(self, poison: str | None = None, *, down: bool = False) -> None:
        self.poison, self.down = poison, down
        self.batches: list[int] = []

    def describe(self) -> dict[str, Any]:
        return {"backend": "unit", "model": "m"}

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        self.batches.append(len(requests))
        for index, request in enumerate(requests):
            if self.down or (self.poison and self.poison in request.prompt.key):
                raise Vul2SafeError(f"HTTP 400 for {request.prompt.key}")
            yield index, Completion('```json\n{"ok": true}\n```', "stop")


def _asks(n: int) -> list[Ask]:
    return [
        Ask(f"k{i}", [{"role": "user", "content": f"q{i}"}], 0, validate=lambda obj: obj)
        for i in range(n)
    ]


def test_a_poisoned_request_does_not_take_its_batch_down(tmp_path: Path) -> None:
    session = UnitSession(poison="k5")
    teacher = CachedTeacher(session, Cache(tmp_path / "c.db"), SamplingParams())
    answers = ask_all(teacher, _asks(8), max_retries=1)
    assert [a.value is not None for a in answers] == [True] * 5 + [False] + [True] * 2
    assert answers[5].attempts == 2
    assert all(
        f["reason"] == "teacher error: HTTP 400 for k5:a" + str(f["attempt"])
        for f in answers[5].failures
    )
    assert session.batches[0] == 8  # bulk first; halves only after the failure


def test_a_teacher_that_answers_nothing_stops_the_stage(tmp_path: Path) -> None:
    teacher = CachedTeacher(UnitSession(down=True), Cache(tmp_path / "c.db"), SamplingParams())
    with pytest.raises(Vul2SafeError, match="HTTP 400"):
        ask_all(teacher, _asks(6), max_retries=2)


# --------------------------------------------------------------------------- against the teacher


@pytest.fixture
def pairs() -> list[RepairPair]:
    """Twelve real SVEN pairs (C and Python), distinct function names."""
    chosen = sven_pairs(files=("cwe-078", "cwe-787"), limit=400)
    python = [p for p in chosen if p.language == "python"][:6]
    c = [p for p in chosen if p.language == "c"][:6]
    return python + c


def _copies(pairs: Sequence[RepairPair]) -> list[RepairPair]:
    return [RepairPair.from_dict(p.to_dict()) for p in pairs]


def _run(
    server: TeacherServer,
    pairs: Sequence[RepairPair],
    cache: Cache,
    config: ReflectConfig,
    *,
    concurrency: int = 8,
    checkpoint: Path | None = None,
    **kwargs: Any,
) -> Any:
    session = open_session(server, concurrency=concurrency)
    try:
        ctx = BuildContext(output=Path("."), config=None, teacher=session, **kwargs)
        return run_stage(_copies(pairs), ctx, config, cache=cache, checkpoint=checkpoint)
    finally:
        session.close()


def _by_name(result: Any) -> dict[str, RepairPair]:
    return {p.func_name: p for p in result.kept + result.dropped}


NO_SCAN: dict[str, Any] = {"scanners": []}

BROKEN = {
    "malformed": "malformed JSON",
    "empty": "empty reply",
    "truncated": "truncated (finish_reason=length)",
    "refusal": "refusal",
    "prose": "off-format reply (no JSON block)",
    "schema": "schema:",
}


def test_every_misbehaviour_is_retried_then_recorded(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    names = [p.func_name or "" for p in pairs]
    plan = dict(zip(names, BROKEN, strict=False))  # six pairs, one class each, every attempt
    plan[names[6]] = "judge:truncated"  # fails later in the conversation
    plan[names[7]] = "malformed_once"  # each step's first attempt only: recovers
    plan[names[8]] = "analyse:refusal_once"
    config = ReflectConfig(votes=2, max_retries=2, **NO_SCAN)
    with start_teacher(misbehave=plan) as server:
        result = _run(server, pairs, Cache(tmp_path / "c.db"), config)
        requests = server.request_count
    by_name = _by_name(result)
    assert len(by_name) == len(pairs)  # nothing lost, the run did not crash
    for name, mode in zip(names, BROKEN, strict=False):
        pair = by_name[name]
        assert pair in result.dropped
        assert pair.drop_reason == "no valid teacher vote"
        votes = pair.reflection["votes"]
        assert len(votes) == 2
        for vote in votes:
            assert not vote["valid"]
            assert vote["invalid_reason"].startswith("analyse: ")
            assert BROKEN[mode] in vote["invalid_reason"]
            assert "(after 3 attempts)" in vote["invalid_reason"]
            assert [f["attempt"] for f in vote["failed_attempts"]] == [0, 1, 2]
            assert all(f["reply_hash"] or mode == "empty" for f in vote["failed_attempts"])
        assert any("invalid" in reason for reason in pair.reflection["reasons"])
    late = by_name[names[6]].reflection["votes"][0]
    assert late["invalid_reason"].startswith("judge: truncated") and "analysis" in late
    for name in (names[7], names[8]):
        votes = by_name[name].reflection["votes"]
        assert all(v["valid"] for v in votes)
        steps = [f["step"] for v in votes for f in v["failed_attempts"]]
        expected = ["analyse", "judge", "reflect"] if name == names[7] else ["analyse"]
        assert steps == expected * 2
    healthy = [by_name[n] for n in names[9:]]
    assert all(v["valid"] for p in healthy for v in p.reflection["votes"])
    # requests: 3 healthy turns per vote, plus the retries that the plan causes
    stats = result.stats
    assert stats["teacher_requests"] == requests
    assert stats["invalid_votes"]["analyse: refusal"] == 2
    assert sum(stats["failed_attempts"].values()) == sum(
        len(v["failed_attempts"]) for p in by_name.values() for v in p.reflection["votes"]
    )


def test_rerun_with_the_same_cache_sends_no_request(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    plan = {pairs[0].func_name or "": "malformed", pairs[1].func_name or "": "split"}
    config = ReflectConfig(votes=3, **NO_SCAN)
    cache = Cache(tmp_path / "c.db")
    with start_teacher(misbehave=plan) as server:
        first = _run(server, pairs, cache, config)
        sent = server.request_count
        assert sent > 0 and first.stats["cache_hits"] == 0
        second = _run(server, pairs, cache, config)
        assert server.request_count == sent  # zero new teacher requests
    assert second.stats["teacher_requests"] == 0
    assert second.stats["cache_hits"] == first.stats["teacher_requests"]
    assert [p.to_dict() for p in second.kept] == [p.to_dict() for p in first.kept]
    assert [p.drop_reason for p in second.dropped] == [p.drop_reason for p in first.dropped]
    split = _by_name(first)[pairs[1].func_name]
    assert split.reflection["agreement"] == pytest.approx(2 / 3, abs=1e-3)
    assert [v["fix_is_correct"] for v in split.reflection["votes"]] == [True, False, True]


def test_the_cache_key_ignores_where_the_teacher_is_served(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    """A new server address (same model) or another concurrency still hits the cache."""
    cache, config = Cache(tmp_path / "c.db"), ReflectConfig(votes=1, **NO_SCAN)
    with start_teacher() as server:
        _run(server, pairs[:3], cache, config, concurrency=4)
    with start_teacher() as other:
        _run(other, pairs[:3], cache, config, concurrency=2)
        assert other.request_count == 0


class SimulatedCrash(RuntimeError):
    """Not a Vul2SafeError: the stage must not mistake it for a teacher error."""


class CrashingSession(Session):
    """Delegates to a real session and raises after ``crash_after`` completions."""

    def __init__(self, inner: Session, crash_after: int) -> None:
        self.inner, self.left = inner, crash_after
        self.delivered: list[tuple[str, int]] = []

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        for index, completion in self.inner.generate(requests, params):
            if self.left == 0:
                raise SimulatedCrash("the process died here")
            self.left -= 1
            request = requests[index]
            self.delivered.append(
                (json.dumps(request.prompt.messages), params.seed + request.sample_index)
            )
            yield index, completion


def test_an_interrupted_run_resumes_without_repeating_answered_calls(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    config = ReflectConfig(votes=2, chunk_pairs=4, **NO_SCAN)
    cache, checkpoint = Cache(tmp_path / "c.db"), tmp_path / "reflect.checkpoint.jsonl"
    work = pairs[:8]
    with start_teacher() as server:
        real = open_session(server, concurrency=1)
        crashing = CrashingSession(real, crash_after=4 * 2 * 3 + 5)  # chunk 1, then 5 more
        ctx = BuildContext(output=tmp_path, config=None, teacher=crashing)
        with pytest.raises(SimulatedCrash):
            run_stage(_copies(work), ctx, config, cache=cache, checkpoint=checkpoint)
        real.close()
        saved = read_pairs(checkpoint)
        assert [p.pair_id for p in saved] == [p.pair_id for p in work[:4]]
        first_bodies = len(server.bodies)

        progress: list[tuple[str, int, int]] = []
        resumed = _run(
            server,
            work,
            cache,
            config,
            concurrency=1,
            checkpoint=checkpoint,
            progress=lambda *a: progress.append(a),
        )
        again = server.bodies[first_bodies:]
    assert len(resumed.kept) + len(resumed.dropped) == len(work)
    checkpointed = {p.func_name for p in work[:4]}
    sent_names = {
        body["messages"][1]["content"].split("Function: `")[1].split("`")[0] for body in again
    }
    assert not sent_names & checkpointed  # finished pairs were not asked again
    repeated = {(json.dumps(b["messages"]), b["seed"]) for b in again} & set(crashing.delivered)
    assert not repeated  # every answer delivered before the crash came from the cache
    # chunk 2 minus the five answers saved before the crash. Counted as distinct requests:
    # the backend's pool may already have sent the next request when the crash came, and
    # the server may log it after ``first_bodies`` was read; the resumed run asks it again.
    distinct = {(json.dumps(b["messages"]), b["seed"]) for b in again}
    assert len(distinct) == 4 * 2 * 3 - 5
    assert progress[-1] == ("reflect", 8, 8)


def test_requests_go_out_in_bulk(pairs: list[RepairPair], tmp_path: Path) -> None:
    config = ReflectConfig(votes=2, **NO_SCAN)
    with start_teacher(delay_s=0.05) as server:
        _run(server, pairs, Cache(tmp_path / "c.db"), config, concurrency=16)
        assert server.max_in_flight >= 12  # 24 conversations per turn, 16 allowed at once


def test_verdicts_revisions_and_record_shape(pairs: list[RepairPair], tmp_path: Path) -> None:
    names = [p.func_name or "" for p in pairs]
    plan = {names[0]: "revise", names[1]: "reject", names[2]: "split"}
    config = ReflectConfig(votes=3, confidence_threshold=0.9, **NO_SCAN)
    with start_teacher(misbehave=plan) as server:
        result = _run(server, pairs[:4], Cache(tmp_path / "c.db"), config)
    by_name = _by_name(result)
    revised = by_name[names[0]]
    assert revised.drop_reason is None and revised.reflection["verdict"] is True
    assert all(v["revised"] and v["verdict_changed"] for v in revised.reflection["votes"])
    assert all(v["judgement"]["fix_is_correct"] is False for v in revised.reflection["votes"])
    assert "3 vote(s) revised" in " ".join(revised.reflection["reasons"])
    rejected = by_name[names[1]]
    assert rejected.drop_reason == "teacher judged the fix incorrect (3 of 3 valid votes)"
    split = by_name[names[2]]
    assert split.drop_reason and "below threshold 0.90" in split.drop_reason
    record = by_name[names[3]].reflection
    assert set(record) >= {
        "votes",
        "verdict",
        "confidence",
        "vulnerable_lines",
        "cwe_guess",
        "reasons",
    }
    vote = record["votes"][0]
    assert set(vote) >= {"analysis", "judgement", "reflection", "revised", "reply_hashes"}
    assert set(vote["reply_hashes"]) == {"analyse", "judge", "reflect"}


def test_scanner_evidence_moves_confidence(tmp_path: Path) -> None:
    """Real Bandit on real pairs: flagged-before/clean-after lifts 2/3 over 0.75; a fix that
    is still flagged falls below; no finding either side changes nothing."""
    wanted = {"add_user", "main", "_map_vol_to_host"}
    chosen = [p for p in sven_pairs(files=("cwe-078",)) if p.func_name in wanted]
    assert len(chosen) == 3
    plan = dict.fromkeys(wanted, "split")  # 2 of 3 votes say the fix is correct
    config = ReflectConfig(votes=3, confidence_threshold=0.75, scanners=["bandit"])
    with start_teacher(misbehave=plan) as server:
        result = _run(server, chosen, Cache(tmp_path / "c.db"), config)
    by_name = _by_name(result)
    lifted = by_name["add_user"]
    scan = lifted.evidence["scanner"]
    assert scan["before_flagged"] is True and scan["after_flagged"] is False
    assert scan["scanners"] == ["bandit"]
    assert scan["before_findings"][0]["rule_id"].startswith("B605")
    assert lifted.drop_reason is None
    assert lifted.reflection["confidence"] == pytest.approx(2 / 3 + 0.15, abs=1e-3)
    still = by_name["main"]
    assert still.evidence["scanner"]["after_flagged"] is True
    assert still.reflection["confidence"] == pytest.approx(2 / 3 - 0.15, abs=1e-3)
    assert "scanner evidence -0.15" in (still.drop_reason or "")
    neutral = by_name["_map_vol_to_host"]
    assert neutral.reflection["scanner_bonus"] == 0.0 and neutral.drop_reason
    assert result.stats["scanners"]["scanners"]["bandit"]["version"]


def test_long_functions_are_dropped_unasked(pairs: list[RepairPair], tmp_path: Path) -> None:
    short = min(len(p.vulnerable.splitlines()) for p in pairs)
    config = ReflectConfig(votes=1, max_lines=short, **NO_SCAN)
    with start_teacher() as server:
        result = _run(server, pairs, Cache(tmp_path / "c.db"), config)
        long_names = {p.func_name for p in pairs if len(p.vulnerable.splitlines()) > short}
        asked = {b["messages"][1]["content"].split("`")[1] for b in server.bodies}
    assert not asked & long_names
    for pair in result.dropped:
        if pair.func_name in long_names:
            assert (pair.drop_reason or "").startswith("function too long for the teacher")


def test_config_from_the_build_config_and_teacher_errors(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    settings = SimpleNamespace(reflect={"votes": 1, "scanners": []})
    with start_teacher() as server:
        session = open_session(server, concurrency=2)
        ctx = BuildContext(output=tmp_path, config=settings, teacher=session)
        result = run_stage(_copies(pairs[:2]), ctx, cache=Cache(tmp_path / "c.db"))
        assert server.request_count == 2 * 3  # votes=1 came from ctx.config.reflect
        assert all(len(p.reflection["votes"]) == 1 for p in result.kept + result.dropped)
    # the server is gone: the stage stops with an error instead of dropping every pair
    with pytest.raises(Vul2SafeError):
        run_stage(_copies(pairs[2:4]), ctx, cache=Cache(tmp_path / "d.db"))
    session.close()
    with pytest.raises(UsageError, match="teacher"):
        run_stage(_copies(pairs[:1]), BuildContext(output=tmp_path, config=None))
