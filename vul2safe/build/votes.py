"""The reflect stage's vote arithmetic: majority verdict, confidence, scanner evidence.

Pure functions over plain values, apart from the stage so that the rules can be read (and
tested) on their own: votes are the teacher's final ``fix_is_correct`` per conversation
(``None`` = invalid vote), and scanner evidence moves the confidence by a fixed weight.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Verdict", "aggregate_votes", "majority_lines", "scanner_bonus"]


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
