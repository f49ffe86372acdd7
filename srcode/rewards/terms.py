"""The reward's terms for one response: pure functions of their arguments, hand-testable.

Per token: a finding's penalty on the tokens of its region, and the secure-span bonus on
tokens that reproduce the reference fix inside the scanned code. On the last token: the
sequence terms (invalid output, functional, clean). :func:`instance_level_rewards` is the
ablation (the same total on the last token); :func:`apply_kl` the per-token KL penalty.
The constants and the tiers they keep are in :mod:`srcode.rewards.config`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from srcode.rewards.code import CodeSegment, inert_spans
from srcode.rewards.config import RewardConfig
from srcode.rewards.spans import Span, _Lines, _located_span, _offsets_tensor, _region_masks
from vul2safe.schema import Finding, Severity

if TYPE_CHECKING:
    import torch

__all__ = [
    "RewardBreakdown",
    "apply_kl",
    "collapse_to_last_token",
    "instance_level_rewards",
    "reward_breakdown",
    "secure_span_matches",
    "stack_rewards",
    "token_level_rewards",
]

# ------------------------------------------------------------------------- secure spans


def _snippet_pattern(snippet: str, min_chars: int) -> re.Pattern[str] | None:
    """A regex matching ``snippet`` as written, up to how its blanks are laid out.

    A run of spaces/tabs in the snippet must be a run of spaces/tabs in the response, a line
    break a line break (with any indentation: the fix may sit at another depth), and NO
    blank where the snippet has none -- no optional whitespace around punctuation, which
    padding could exploit. The ends fall on word boundaries (``x = 1`` not inside
    ``max = 1``). None when the snippet has fewer than ``min_chars`` non-blank characters.
    """
    body = snippet.strip()
    if sum(not ch.isspace() for ch in body) < max(1, min_chars):
        return None
    parts = []
    for piece in re.split(r"(\s+)", body):
        if not piece:
            continue
        if piece.isspace():
            parts.append(
                r"[ \t]*(?:\r\n|\r|\n)[ \t]*" if "\n" in piece or "\r" in piece else r"[ \t]+"
            )
        else:
            parts.append(re.escape(piece))
    head = r"(?<!\w)" if re.match(r"\w", body[0]) else ""
    tail = r"(?!\w)" if re.match(r"\w", body[-1]) else ""
    return re.compile(head + "".join(parts) + tail)


def secure_span_matches(
    response: str,
    secure_snippets: Sequence[str],
    *,
    start: int = 0,
    min_chars: int = 1,
    ranges: Sequence[Span] | None = None,
    inert: Sequence[Span] = (),
) -> list[Span]:
    """Character spans of ``response`` that reproduce a reference secure span.

    Searched only inside ``ranges`` (the scanned code; default: from ``start`` to the end),
    a match lying wholly inside one range. At most one span per snippet -- its first match
    -- so repeating the fix earns nothing; snippets with fewer than ``min_chars`` non-blank
    characters are skipped. A match lying inside one ``inert`` span (a comment or a string
    literal of the code), short of being all of it, does not count: the fix written there
    does nothing. Sorted
    by position; spans of different snippets may overlap.
    """
    where = sorted(ranges) if ranges is not None else [(start, len(response))]
    spans: list[Span] = []
    for snippet in secure_snippets:
        pattern = _snippet_pattern(snippet, min_chars)
        if pattern is None:
            continue
        found = (
            match.span()
            for low, high in where
            for match in pattern.finditer(response, low, high)
            if not any(a <= match.start() and match.end() <= b for a, b in inert)
            or match.span() in inert  # the snippet IS a literal (a parameterised query)
        )
        first = next(found, None)
        if first is not None:
            spans.append(first)
    return sorted(spans)


# ------------------------------------------------------------------------------- reward


@dataclass
class RewardBreakdown:
    """The parts of one rollout's reward, kept apart for logging, the CLI and tests.

    ``penalty`` and ``bonus`` are ``(T,)`` per-token terms; ``sequence`` is the scalar placed
    on the last token, ``sequence_terms`` its named parts (``invalid``, ``functional``,
    ``clean``, ``unlocated``, ``unscannable``); ``findings`` are the ones that count
    (inside the response).
    """

    penalty: torch.Tensor
    bonus: torch.Tensor
    sequence: float
    findings: list[Finding]
    vulnerable: bool
    sequence_terms: dict[str, float] = field(default_factory=dict)

    def total(self) -> torch.Tensor:
        """Token-level rewards: per-token terms plus the sequence term on the last token."""
        rewards = self.penalty + self.bonus
        if rewards.numel():
            rewards[-1] += self.sequence
        return rewards

    def terms(self) -> dict[str, float]:
        """Each term's total: ``security`` (findings), ``secure`` (bonus), sequence parts."""
        out = {"security": float(self.penalty.sum()), "secure": float(self.bonus.sum())}
        out.update(self.sequence_terms)
        return out


def reward_breakdown(
    response_text: str,
    offsets: Sequence[Span] | torch.Tensor,
    findings: Sequence[Finding] = (),
    *,
    secure_snippets: Sequence[str] = (),
    code_offset: int | None = 0,
    code_indent: int = 0,
    segments: Sequence[CodeSegment] | None = None,
    functional: bool | None = None,
    invalid: bool = False,
    scanned: bool = True,
    unscannable: bool = False,
    config: RewardConfig | None = None,
) -> RewardBreakdown:
    """Compute each term of :func:`token_level_rewards` (same arguments)."""
    import torch

    config = config or RewardConfig()
    if segments is None:  # the caller's findings for the one block it located: scanned
        segments = [
            CodeSegment(
                "", "", code_offset, code_indent, len(response_text), True, list(findings), True
            )
        ]
    offsets_t = _offsets_tensor(offsets)
    n_tokens = offsets_t.shape[0]
    penalty = torch.zeros(n_tokens, dtype=torch.float32)
    unlocated = 0.0

    # Vulnerable regions. Where regions overlap a token takes the most severe one, not the
    # sum: Bandit and Semgrep reporting the same call must not double its penalty.
    counted: list[Finding] = []
    lines = _Lines.of(response_text)
    for segment in segments:
        offset = segment.offset
        inside = offset is not None and 0 <= offset <= len(response_text)
        for finding in segment.findings:
            weight = config.severity_weight(finding.severity)
            if offset is None:  # code not found in the response: cannot place the penalty
                counted.append(finding)
                unlocated += config.vuln_penalty * weight
                continue
            span = _located_span(
                response_text, lines, finding, offset, segment.indent, segment.starts
            )
            if not inside or span is None:
                continue  # outside the response (e.g. in a prompt): not the model's doing
            counted.append(finding)
            mask = _region_masks(offsets_t, [span])[0]
            size = int(mask.sum())
            if size == 0 or weight == 0:
                continue
            value = config.vuln_penalty * weight / (size if config.normalize_region_penalty else 1)
            penalty = torch.where(mask, torch.minimum(penalty, torch.tensor(value)), penalty)
    summed = float(penalty.sum()) + unlocated
    if summed < config.max_vuln_penalty:  # bounded per answer: scale every region down
        scale = config.max_vuln_penalty / summed
        penalty, unlocated = penalty * scale, unlocated * scale

    # Secure spans: a fixed share per reproduced span, inside the scanned code only, on
    # tokens no region penalised; nothing for invalid output or code that misses the task.
    bonus = torch.zeros(n_tokens, dtype=torch.float32)
    if secure_snippets and config.secure_bonus and not invalid and functional is not False:
        ranges = [(s.offset, s.end) for s in segments if s.offset is not None and s.scanned]
        patterns = [s for s in secure_snippets if _snippet_pattern(s, config.secure_min_chars)]
        spans = secure_span_matches(
            response_text,
            patterns,
            min_chars=config.secure_min_chars,
            ranges=ranges,
            inert=inert_spans(response_text, list(segments)),
        )
        share = config.secure_bonus / len(patterns) if patterns else 0.0
        for span in spans:
            mask = _region_masks(offsets_t, [span])[0] & (penalty == 0)
            if int(mask.sum()):
                bonus = bonus + mask.float() * (share / int(mask.sum()))

    # Sequence terms (on the last token).
    threshold = Severity.parse(config.clean_min_severity)
    vulnerable = any(Severity.parse(f.severity).at_least(threshold) for f in counted)
    terms: dict[str, float] = {}
    if unlocated:
        terms["unlocated"] = unlocated
    if unscannable and not invalid:  # scanners failed: costs one high finding, in the bound
        room = config.max_vuln_penalty - (float(penalty.sum()) + unlocated)
        terms["unscannable"] = max(config.vuln_penalty * config.weight_high, min(room, 0.0))
    if invalid:
        terms["invalid"] = config.invalid_penalty
    else:
        if functional:
            terms["functional"] = config.functional_bonus
        if scanned and not vulnerable and functional is not False:
            terms["clean"] = config.clean_bonus
    return RewardBreakdown(penalty, bonus, sum(terms.values()), counted, vulnerable, terms)


def token_level_rewards(
    response_text: str,
    offsets: Sequence[Span] | torch.Tensor,
    findings: Sequence[Finding] = (),
    **kwargs: Any,
) -> torch.Tensor:
    """SRCode's ``(T,)`` reward for one response whose tokens span ``offsets``.

    ``findings`` are located in the extracted code, which starts at ``code_offset`` in
    ``response_text`` (its later lines dedented by ``code_indent``; see
    :func:`~srcode.rewards.spans.locate_code`); or pass ``segments`` (every piece of code,
    each with its own findings: :func:`~srcode.rewards.code.code_segments`; only those a
    scanner read, ``scanned``, can earn the secure bonus). Findings
    outside the response are ignored; a segment with ``offset=None`` (not found in the
    response) puts each finding's penalty on the last token instead.

    Per token: ``vuln_penalty * weight`` (divided by the region's token count when
    ``normalize_region_penalty``) inside a vulnerable region, the most severe region where
    several overlap, the whole scaled so it never sums below ``max_vuln_penalty``; else a
    ``secure_bonus / len(snippets)`` share spread over the tokens of each secure snippet
    reproduced inside the code. Last token: ``invalid_penalty`` if ``invalid``; else
    ``functional_bonus`` when ``functional`` is True, and ``clean_bonus`` when ``scanned``,
    no finding reaches ``clean_min_severity`` and ``functional`` is not False (None: not
    measured). ``unscannable`` (every scanner covering some piece of the code failed on
    it, e.g. Bandit on a file declaring ``# coding: ascii``) costs one high finding
    (``vuln_penalty * weight_high``, within ``max_vuln_penalty``): evading the scanner must
    never pay more than being scanned. The KL term is separate (:func:`apply_kl`).
    """
    return reward_breakdown(response_text, offsets, findings, **kwargs).total()


def collapse_to_last_token(rewards: torch.Tensor) -> torch.Tensor:
    """The instance-level view of token-level ``rewards`` (``(..., T)``): each row's sum on
    its last position, zeros elsewhere. Right-padded batches must be collapsed per rollout
    (before padding), or the sum lands on a pad position."""
    import torch

    collapsed = torch.zeros_like(rewards)
    if rewards.shape[-1]:
        collapsed[..., -1] = rewards.sum(dim=-1)
    return collapsed


def instance_level_rewards(
    response_text: str,
    offsets: Sequence[Span] | torch.Tensor,
    findings: Sequence[Finding] = (),
    **kwargs: Any,
) -> torch.Tensor:
    """The ablation baseline: :func:`token_level_rewards` summed onto the last token, so both
    granularities hand PPO exactly the same total and differ only in where it lands."""
    return collapse_to_last_token(token_level_rewards(response_text, offsets, findings, **kwargs))


def stack_rewards(rewards: Sequence[torch.Tensor], length: int | None = None) -> torch.Tensor:
    """Right-pad per-rollout ``(T_i,)`` rewards with zeros into one ``(B, length)`` tensor
    (``length`` defaults to the longest), matching right-padded response tokens."""
    import torch

    width = max((r.shape[0] for r in rewards), default=0) if length is None else length
    out = torch.zeros(len(rewards), width, dtype=torch.float32)
    for row, reward in enumerate(rewards):
        if reward.shape[0] > width:
            raise ValueError(f"rollout {row} has {reward.shape[0]} rewards > length {width}")
        out[row, : reward.shape[0]] = reward
    return out


# ----------------------------------------------------------------------------------- KL


def apply_kl(
    rewards: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    kl_coef: float,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Subtract the per-token KL penalty: ``(rewards - kl_coef * kl, kl)``.

    ``kl`` is the k1 estimator ``logprobs - ref_logprobs`` of the sampled tokens: unbiased
    for KL(policy || reference) in expectation over the policy's samples, and its per-token
    value says which tokens moved away from the reference (what TRL's original PPO
    subtracted). A single token's value can be negative; k3 (``exp(-d) - 1 + d``,
    ``d = logprobs - ref_logprobs``) is never negative and has lower variance, and can be
    swapped in here if the KL estimate turns out too noisy. Both tensors are rollout-time
    log-probabilities (no gradient). ``mask`` (1 = response token, 0 = padding) zeroes both
    outputs at padding.
    """
    if not (rewards.shape == logprobs.shape == ref_logprobs.shape):
        raise ValueError(
            f"shapes differ: rewards {tuple(rewards.shape)}, logprobs "
            f"{tuple(logprobs.shape)}, ref_logprobs {tuple(ref_logprobs.shape)}"
        )
    kl = logprobs - ref_logprobs
    shaped = rewards - kl_coef * kl
    if mask is not None:
        weight = mask.to(kl.dtype)
        kl, shaped = kl * weight, shaped * weight
    return shaped, kl
