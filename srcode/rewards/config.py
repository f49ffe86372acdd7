"""The reward's constants (:class:`RewardConfig`), each with its reason, and the ordering
they must keep.

The defaults are ours (the paper's are not public). They are chosen so the reward orders
answers in tiers that no combination of terms can cross -- the property the exploit tests in
``tests/srcode/test_rewards_exploits.py`` check:

1. **Invalid output or refusal** (no code, unparsable, truncated, refusal):
   ``invalid_penalty`` (-3) plus any findings' penalty: at most -3.
2. **Valid code that does not implement the task** (its tests fail, or, without tests, it
   does not define what the prompt asks for where a caller can reach it, or the definition
   is a stub such as ``pass``, ``return 0`` or ``return path``): findings' penalty only,
   no clean or secure bonus: in ``[max_vuln_penalty, 0]`` = ``[-2, 0]``.
3. **Valid code that implements the task**: ``functional_bonus`` (+2.5) plus findings'
   penalty (at least ``max_vuln_penalty``; code every covering scanner failed on counts as
   one high finding inside that bound) plus ``clean_bonus`` (+1) when no finding reaches
   ``clean_min_severity`` plus the secure-span bonus (at most ``secure_bonus``, 0.5): in
   ``[0.5, 4]``; clean = 3.5 (+0.5), one high finding = 1.5.

So invalid < any valid answer, not implementing < implementing, and within tier 3 clean
beats vulnerable by ``clean_bonus`` + the finding's penalty (2 for one high finding), more
than the bounded secure bonus can buy back. :meth:`RewardConfig.__post_init__` rejects
settings that would break the tiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal

from vul2safe.errors import UsageError
from vul2safe.schema import Severity

__all__ = ["REWARD_SCORER_KEYS", "RewardConfig", "reward_config_from_options"]

#: ``reward:`` keys that configure the scorer, not the reward's constants
REWARD_SCORER_KEYS = ("scanners", "mode")


@dataclass
class RewardConfig:
    """The reward's constants; see the module docstring for the tiers they must keep."""

    granularity: Literal["token", "instance"] = field(
        default="token",
        metadata={
            "help": "'token': penalties and bonuses land on the tokens that earned them "
            "(SRCode). 'instance': the same total summed onto the last token, the "
            "one-scalar baseline for the ablation."
        },
    )
    vuln_penalty: float = field(
        default=-1.0,
        metadata={
            "help": "Penalty (<= 0) of one vulnerable region, times the finding's severity "
            "weight. With normalize_region_penalty it is spread evenly over the region's "
            "tokens, so a finding costs the same however many tokens it spans."
        },
    )
    weight_high: float = field(
        default=1.0,
        metadata={"help": "Severity weight of a high finding (multiplies vuln_penalty)."},
    )
    weight_medium: float = field(
        default=0.6,
        metadata={
            "help": "Severity weight of a medium finding: still a reported weakness (DESIGN "
            "counts high and medium), but less certain or less severe than high."
        },
    )
    weight_low: float = field(
        default=0.0,
        metadata={
            "help": "Severity weight of a low finding. 0 by default: low findings are mostly "
            "noise (Bandit's 'import subprocess', flawfinder's fixed-size buffers) and "
            "penalising them teaches the model to avoid whole modules, not weaknesses."
        },
    )
    normalize_region_penalty: bool = field(
        default=True,
        metadata={
            "help": "Divide a region's penalty by its token count, so a finding costs "
            "vuln_penalty * weight in total however many tokens it spans (otherwise the "
            "total depends on the tokenizer and a long region drowns every other term)."
        },
    )
    max_vuln_penalty: float = field(
        default=-2.0,
        metadata={
            "help": "Floor (<= 0) of the summed findings' penalty of one answer; beyond it "
            "every region's penalty is scaled down in proportion. Bounding it is what lets "
            "invalid_penalty sit strictly below every valid answer."
        },
    )
    secure_bonus: float = field(
        default=0.5,
        metadata={
            "help": "Total bonus (>= 0, at most |vuln_penalty|) for reproducing ALL the "
            "reference fix's secure spans inside the scanned code: each span earns "
            "secure_bonus / number-of-spans once (its first match), spread over its tokens. "
            "A fixed amount per span, so padding a span with more tokens earns nothing."
        },
    )
    secure_min_chars: int = field(
        default=4,
        metadata={
            "help": "Reference secure spans with fewer non-blank characters are ignored: a "
            "span such as '}' or 'end' would match anywhere and reward nothing secure."
        },
    )
    clean_bonus: float = field(
        default=1.0,
        metadata={
            "help": "Sequence term on the last token when every code block was scanned, no "
            "finding reaches clean_min_severity and the code implements the task. Withheld "
            "when some block could not be scanned: unscanned is not clean."
        },
    )
    clean_min_severity: Literal["low", "medium", "high"] = field(
        default="medium",
        metadata={
            "help": "A finding at or above this severity makes the answer 'vulnerable' (no "
            "clean bonus; counted in vulnerable_fraction). 'medium' = the paper's "
            "'high- and medium-risk', the default threshold of vul2safe eval."
        },
    )
    functional_bonus: float = field(
        default=2.5,
        metadata={
            "help": "Sequence term when the code implements the task: the task's tests pass "
            "in the sandbox or, without tests, the code parses and defines what the prompt "
            "asks for with a non-trivial body. Larger than |max_vuln_penalty|, so code that "
            "does not implement the task never scores above code that does."
        },
    )
    invalid_penalty: float = field(
        default=-3.0,
        metadata={
            "help": "Sequence term (< max_vuln_penalty) when the output is not valid code "
            "(no code, unparsable, truncated, refusal): strictly below every valid answer."
        },
    )
    tests_timeout_s: float = field(
        default=10.0,
        metadata={"help": "Wall-clock limit of one sandboxed test run (vul2safe.sandbox)."},
    )
    kl_coef: float = field(
        default=0.05,
        metadata={
            "help": "Coefficient of the per-token KL penalty to the reference model "
            "(apply_kl); 0.05 is TRL's PPO default. PPO's own beta is ppo.init_kl_coef."
        },
    )

    def __post_init__(self) -> None:
        if self.granularity not in ("token", "instance"):
            raise UsageError(f"granularity must be 'token' or 'instance', got {self.granularity!r}")
        if self.vuln_penalty > 0 or self.invalid_penalty > 0 or self.max_vuln_penalty > 0:
            raise UsageError(
                "vuln_penalty, max_vuln_penalty and invalid_penalty are penalties: use values <= 0"
            )
        if min(self.weight_high, self.weight_medium, self.weight_low) < 0:
            raise UsageError("severity weights must be >= 0 (the sign is in vuln_penalty)")
        if not 0 <= self.secure_bonus <= abs(self.vuln_penalty):
            raise UsageError(
                f"secure_bonus must be between 0 and |vuln_penalty| ({abs(self.vuln_penalty)}): "
                "reproducing the fix must never buy back a finding"
            )
        if self.invalid_penalty >= self.max_vuln_penalty:
            raise UsageError(
                f"invalid_penalty ({self.invalid_penalty}) must be below max_vuln_penalty "
                f"({self.max_vuln_penalty}), or an invalid output could tie with valid code"
            )
        if self.functional_bonus + self.max_vuln_penalty <= 0:
            raise UsageError(
                f"functional_bonus ({self.functional_bonus}) must exceed |max_vuln_penalty| "
                f"({abs(self.max_vuln_penalty)}), or code that does not implement the task "
                "could score above code that does"
            )
        if self.tests_timeout_s <= 0:
            raise UsageError("tests_timeout_s must be > 0")
        Severity.parse(self.clean_min_severity)

    def severity_weight(self, severity: Severity | str) -> float:
        """The weight of a finding of ``severity``."""
        level = Severity.parse(severity)
        return {
            Severity.HIGH: self.weight_high,
            Severity.MEDIUM: self.weight_medium,
            Severity.LOW: self.weight_low,
        }[level]


def reward_config_from_options(options: dict[str, Any]) -> tuple[RewardConfig, dict[str, Any]]:
    """Split a ``reward:`` mapping into a :class:`RewardConfig` and the scorer's keys.

    Unknown keys fail with one line naming the valid ones; ``kl_coef`` is refused because
    PPO owns beta (``ppo.init_kl_coef`` and its controller).
    """
    import difflib

    valid = [f.name for f in fields(RewardConfig) if f.name != "kl_coef"]
    valid += REWARD_SCORER_KEYS
    constants: dict[str, Any] = {}
    scorer: dict[str, Any] = {}
    for key, value in options.items():
        if key == "kl_coef":
            raise UsageError("reward.kl_coef: PPO's beta is ppo.init_kl_coef; remove it here")
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"reward.{key}: unknown key{hint}; valid keys: {', '.join(valid)}")
        (scorer if key in REWARD_SCORER_KEYS else constants)[key] = value
    try:
        return RewardConfig(**constants), scorer
    except TypeError as exc:
        raise UsageError(f"reward: {exc}") from None
