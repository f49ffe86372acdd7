"""SRCode's token-level reward: scanner findings mapped onto the tokens that wrote them.

TRL's old PPO put one scalar on a response's last token. SRCode spreads the security signal
over the tokens responsible for it, so the policy learns *which* tokens made the code
vulnerable (and which reproduced the fix) instead of guessing from one number per sample.

Reading order (everything but :mod:`.scorer` is a pure function of its arguments):

1. :mod:`.config` -- :class:`RewardConfig`: the constants and the tiers they keep (invalid
   < does not implement the task < implements it; within that, clean > vulnerable).
2. :mod:`.spans` -- finding regions and extracted code as character spans, character spans
   as token masks, and :func:`decode_with_offsets` for generated ids.
3. :mod:`.code` -- every piece of code in a response (all fenced blocks, code outside the
   fences), located: all of it is scanned, so no clean block hides a vulnerable one.
4. :mod:`.functional` -- the measured functional term: tests in the sandbox, else a static
   check that the code defines what the prompt asks for with a non-trivial body.
5. :mod:`.terms` -- the reward (:func:`reward_breakdown`, :func:`token_level_rewards`,
   :func:`instance_level_rewards`) and :func:`apply_kl`.
6. :mod:`.scorer` -- :class:`RolloutScorer` (one batched scan per batch) and
   :class:`ScannerReward`, PPO's reward function.

``srcode reward --samples S.jsonl`` (:mod:`srcode.reward_cmd`) shows the result per token.
"""

from __future__ import annotations

from srcode.rewards.code import CodeSegment, code_segments
from srcode.rewards.config import REWARD_SCORER_KEYS, RewardConfig, reward_config_from_options
from srcode.rewards.functional import implements_statically, requested_names, run_tests
from srcode.rewards.scorer import (
    RewardStats,
    Rollout,
    RolloutReward,
    RolloutScorer,
    ScannerReward,
    ScoredBatch,
    secure_snippets,
)
from srcode.rewards.spans import (
    Span,
    char_spans_to_token_mask,
    decode_with_offsets,
    finding_char_span,
    line_col_to_offset,
    locate_code,
)
from srcode.rewards.terms import (
    RewardBreakdown,
    apply_kl,
    collapse_to_last_token,
    instance_level_rewards,
    reward_breakdown,
    secure_span_matches,
    stack_rewards,
    token_level_rewards,
)

__all__ = [
    "REWARD_SCORER_KEYS",
    "CodeSegment",
    "RewardBreakdown",
    "RewardConfig",
    "RewardStats",
    "Rollout",
    "RolloutReward",
    "RolloutScorer",
    "ScannerReward",
    "ScoredBatch",
    "Span",
    "apply_kl",
    "char_spans_to_token_mask",
    "code_segments",
    "collapse_to_last_token",
    "decode_with_offsets",
    "finding_char_span",
    "implements_statically",
    "instance_level_rewards",
    "line_col_to_offset",
    "locate_code",
    "requested_names",
    "reward_breakdown",
    "reward_config_from_options",
    "run_tests",
    "secure_snippets",
    "secure_span_matches",
    "stack_rewards",
    "token_level_rewards",
]
