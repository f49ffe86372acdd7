"""The one place srcode touches vul2safe's scanner registry and sandbox: score a batch.

:class:`RolloutScorer` extracts the answer of each rollout, finds every other piece of code
in it (:func:`~srcode.rewards.code.code_segments`), scans ALL of it in ONE
``scan_samples`` call (each tool starts once per batch; the content-addressed cache serves
code seen before), measures the functional term (tests in the sandbox, else the static
check of :mod:`srcode.rewards.functional`), and computes each reward
(:func:`~srcode.rewards.terms.reward_breakdown`). :class:`ScannerReward` adapts it to
PPO's reward-function interface.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from srcode.rewards.code import CodeSegment, code_segments, defuse_suppressions
from srcode.rewards.config import RewardConfig, reward_config_from_options
from srcode.rewards.functional import implements_statically, run_tests
from srcode.rewards.spans import Span
from srcode.rewards.terms import RewardBreakdown, collapse_to_last_token, reward_breakdown
from vul2safe.schema import Severity

if TYPE_CHECKING:
    import torch

    from vul2safe.cache import Cache
    from vul2safe.scanning import ScanOptions

__all__ = [
    "RewardStats",
    "Rollout",
    "RolloutReward",
    "RolloutScorer",
    "ScannerReward",
    "ScoredBatch",
]


@dataclass(frozen=True)
class Rollout:
    """One generated answer to score.

    ``offsets`` are its tokens' ``[start, end)`` spans in ``response``
    (:func:`~srcode.rewards.spans.decode_with_offsets`, or a fast tokenizer's offset
    mapping); ``secure_snippets`` the reference fix's secure spans (PrimeVul+ ``localize``);
    ``tests`` the task's Python test code (run in the sandbox after the answer), None when
    it has none; ``finish_reason`` as the generator reported it (``"length"``: truncated).
    """

    prompt: str
    response: str
    offsets: Sequence[Span]
    language: str
    secure_snippets: Sequence[str] = ()
    tests: str | None = None
    finish_reason: str | None = None


@dataclass
class RolloutReward:
    """One rollout's reward and the evidence behind it."""

    rewards: torch.Tensor
    status: str
    code: str
    code_offset: int | None
    scanned: bool
    breakdown: RewardBreakdown
    segments: list[CodeSegment]
    functional: bool
    functional_detail: str


@dataclass
class RewardStats:
    """Batch statistics for the training log; denominators are all rollouts."""

    n: int
    vulnerable: int
    invalid: int
    unscanned: int
    unlocated: int
    functional: int
    extra_blocks: int
    findings_per_cwe: dict[str, int]
    mean_reward: float
    penalised_tokens: int
    secure_tokens: int
    scan_seconds: float

    @property
    def vulnerable_fraction(self) -> float:
        """Rollouts with a finding at or above ``clean_min_severity`` / all rollouts."""
        return self.vulnerable / self.n if self.n else 0.0

    def to_log(self, prefix: str = "reward/") -> dict[str, float]:
        """Flat scalars for a metrics logger."""
        log = {
            f"{prefix}vulnerable_fraction": self.vulnerable_fraction,
            f"{prefix}functional_fraction": self.functional / self.n if self.n else 0.0,
            f"{prefix}invalid": float(self.invalid),
            f"{prefix}unscanned": float(self.unscanned),
            f"{prefix}unlocated": float(self.unlocated),
            f"{prefix}extra_blocks": float(self.extra_blocks),
            f"{prefix}mean": self.mean_reward,
            f"{prefix}penalised_tokens": float(self.penalised_tokens),
            f"{prefix}secure_tokens": float(self.secure_tokens),
            f"{prefix}scan_seconds": self.scan_seconds,
        }
        log.update({f"{prefix}cwe/{c}": float(n) for c, n in self.findings_per_cwe.items()})
        return log


@dataclass
class ScoredBatch:
    """Per-rollout rewards (in input order) and batch statistics."""

    rollouts: list[RolloutReward]
    stats: RewardStats

    @property
    def rewards(self) -> list[torch.Tensor]:
        return [r.rewards for r in self.rollouts]


class RolloutScorer:
    """Score a batch of rollouts: extract, find all code, scan it at once, test, reward.

    Training rewards come from the very scanners ``vul2safe eval`` reports with. Unscanned
    is not clean: when any piece of code could not be scanned (no scanner for its language,
    every scanner failed) the answer gets no clean bonus.
    """

    def __init__(
        self,
        config: RewardConfig | None = None,
        *,
        scanners: Sequence[str] | None = None,
        scan_options: ScanOptions | None = None,
        mode: Literal["chat", "completion"] = "chat",
        cache: Cache | None = None,
    ) -> None:
        from vul2safe.scanning import ScanOptions

        self.config = config or RewardConfig()
        self.scanners = list(scanners) if scanners else None
        self.scan_options = scan_options or ScanOptions(use_cache=True)
        self.mode = mode
        self._cache = cache

    def _scan_cache(self) -> Cache | None:
        if not self.scan_options.use_cache:
            return None
        if self._cache is None:
            from vul2safe.cache import Cache

            self._cache = Cache()
        return self._cache

    def __call__(self, rollouts: Sequence[Rollout]) -> ScoredBatch:
        return self.score(rollouts)

    def _scan(self, segments: list[list[CodeSegment]]) -> float:
        """Scan every segment of every rollout in one call; fills findings and scanned."""
        from vul2safe.scanning import scan_samples
        from vul2safe.schema import Sample, SampleResult

        shells: list[tuple[CodeSegment, SampleResult]] = []
        for index, pieces in enumerate(segments):
            for part, segment in enumerate(pieces):
                sid = f"rollout-{index}-{part}"
                code = defuse_suppressions(segment.code)  # no `# nosec` in policy output
                sample = Sample(sid, code, segment.language, path=sid)
                shells.append((segment, SampleResult(sample)))
        started = time.perf_counter()
        if shells:
            results = [result for _, result in shells]
            scan_samples(results, self.scanners, self.scan_options, cache=self._scan_cache())
        for segment, result in shells:
            ok = [report for report in result.reports if report.ok]
            segment.scanned = result.error is None and bool(ok)
            segment.failed = bool(result.reports) and not ok
            segment.findings = [finding for report in ok for finding in report.findings]
        return time.perf_counter() - started

    def _functional(
        self, rollouts: Sequence[Rollout], answers: list[Any]
    ) -> list[tuple[bool, str]]:
        """Tests in the sandbox where the task has them, else the static check."""
        from vul2safe.extract import OutputClass, canonical_language

        verdicts: list[tuple[bool, str]] = [(False, "")] * len(rollouts)
        to_test: list[int] = []
        for index, (rollout, ext) in enumerate(zip(rollouts, answers, strict=True)):
            if ext.status is not OutputClass.ok:
                verdicts[index] = (False, f"invalid output ({ext.status.value})")
            elif rollout.tests:
                to_test.append(index)
            else:
                source = self._source(rollout, ext)
                language = canonical_language(rollout.language)
                verdicts[index] = implements_statically(source, language, rollout.prompt)
        programs = [
            (
                self._source(rollouts[i], answers[i]),
                str(rollouts[i].tests),
                canonical_language(rollouts[i].language),
            )
            for i in to_test
        ]
        for index, verdict in zip(
            to_test, run_tests(programs, timeout_s=self.config.tests_timeout_s), strict=True
        ):
            verdicts[index] = verdict
        return verdicts

    def _source(self, rollout: Rollout, ext: Any) -> str:
        """The program the answer stands for: prompt + continuation in completion mode."""
        glued = self.mode == "completion" and not ext.rule.startswith(("fenced", "unclosed"))
        return rollout.prompt + ext.code if glued else ext.code

    def score(self, rollouts: Sequence[Rollout]) -> ScoredBatch:
        """Rewards for ``rollouts`` (input order), per :attr:`config`'s granularity."""
        from vul2safe.extract import OutputClass, canonical_language, extract_code

        answers = [
            extract_code(
                r.response,
                language=r.language,
                prompt=r.prompt if self.mode == "completion" else None,
                mode=self.mode,
                finish_reason=r.finish_reason,
            )
            for r in rollouts
        ]
        segments = [
            code_segments(r.response, ext, canonical_language(r.language))
            for r, ext in zip(rollouts, answers, strict=True)
        ]
        scan_seconds = self._scan(segments)
        verdicts = self._functional(rollouts, answers)

        scored: list[RolloutReward] = []
        for rollout, ext, pieces, (implemented, why) in zip(
            rollouts, answers, segments, verdicts, strict=True
        ):
            invalid = ext.status is not OutputClass.ok
            scanned = _all_scanned(pieces)
            breakdown = reward_breakdown(
                rollout.response,
                rollout.offsets,
                secure_snippets=rollout.secure_snippets,
                segments=pieces,
                functional=implemented,
                invalid=invalid,
                scanned=scanned,
                unscannable=any(s.failed and not s.optional for s in pieces),
                config=self.config,
            )
            rewards = breakdown.total()
            if self.config.granularity == "instance":
                rewards = collapse_to_last_token(rewards)
            primary = next((s for s in pieces if s.primary), None)
            scored.append(
                RolloutReward(
                    rewards,
                    ext.status.value,
                    ext.code,
                    primary.offset if primary else None,
                    scanned,
                    breakdown,
                    pieces,
                    implemented,
                    why,
                )
            )
        return ScoredBatch(scored, self._stats(scored, scan_seconds))

    def _stats(self, scored: Sequence[RolloutReward], scan_seconds: float) -> RewardStats:
        threshold = Severity.parse(self.config.clean_min_severity)
        per_cwe: Counter[str] = Counter()
        for item in scored:
            for finding in item.breakdown.findings:
                if Severity.parse(finding.severity).at_least(threshold):
                    per_cwe.update(finding.cwe or ["unknown"])
        totals = [float(item.rewards.sum()) for item in scored]
        return RewardStats(
            n=len(scored),
            vulnerable=sum(item.breakdown.vulnerable for item in scored),
            invalid=sum(item.status != "ok" for item in scored),
            unscanned=sum(bool(item.segments) and not item.scanned for item in scored),
            unlocated=sum(any(s.offset is None for s in item.segments) for item in scored),
            functional=sum(item.functional for item in scored),
            extra_blocks=sum(sum(not s.primary for s in item.segments) for item in scored),
            findings_per_cwe=dict(sorted(per_cwe.items())),
            mean_reward=sum(totals) / len(totals) if totals else 0.0,
            penalised_tokens=sum(int((i.breakdown.penalty < 0).sum()) for i in scored),
            secure_tokens=sum(int((i.breakdown.bonus > 0).sum()) for i in scored),
            scan_seconds=scan_seconds,
        )


class ScannerReward:
    """The ``reward:`` section's scorer as PPO's reward function (rollouts -> tensors).

    Keys of ``reward:`` are :class:`RewardConfig`'s fields, plus ``scanners`` (names from
    vul2safe's registry; default: every available default scanner for the language) and
    ``mode`` (``chat`` | ``completion``). A rollout is anything with ``prompt_text``,
    ``response_text``, ``response_offsets``, ``language`` and ``metadata`` (srcode.ppo's
    Rollout); from the rl row it reads the reference fix's ``secure_spans`` and the task's
    ``tests`` (code, run in the sandbox -- never a stored pass/fail flag). ``last_log``
    holds the scorer's batch statistics for the metrics log.
    """

    def __init__(self, options: dict[str, Any], *, cache: Cache | None = None) -> None:
        config, scorer = reward_config_from_options(dict(options))
        self.scorer = RolloutScorer(
            config, scanners=scorer.get("scanners"), mode=scorer.get("mode", "chat"), cache=cache
        )
        self.last_log: dict[str, float] = {}
        self.last_batch: ScoredBatch | None = None

    @staticmethod
    def to_scored(rollouts: Sequence[Any]) -> list[Rollout]:
        """PPO's rollouts in the form :class:`RolloutScorer` takes."""
        return [
            Rollout(
                prompt=r.prompt_text,
                response=r.response_text,
                offsets=r.response_offsets,
                language=r.language,
                secure_snippets=secure_snippets(r.metadata),
                tests=r.metadata.get("tests") or None,
                finish_reason="length" if r.metadata.get("truncated") else "stop",
            )
            for r in rollouts
        ]

    def __call__(self, rollouts: Sequence[Any]) -> list[torch.Tensor]:
        batch = self.scorer(self.to_scored(rollouts))
        self.last_batch = batch
        self.last_log = batch.stats.to_log("scan/")
        return batch.rewards


def _all_scanned(pieces: Sequence[CodeSegment]) -> bool:
    """Every required piece was scanned (a second reading of a block may fail to scan)."""
    return bool(pieces) and all(s.scanned for s in pieces if not s.optional)


def secure_snippets(metadata: dict[str, Any]) -> tuple[str, ...]:
    """The reference fix's secure spans as text (PrimeVul+ ``localize`` character spans)."""
    reference = metadata.get("reference") or ""
    spans = metadata.get("secure_spans") or []
    return tuple(reference[start:end] for start, end in spans if end > start)
