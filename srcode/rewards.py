"""SRCode's token-level reward: scanner findings mapped onto the tokens that wrote them.

TRL's old PPO put one scalar on a response's last token. SRCode spreads the security signal
over the tokens responsible for it, so the policy learns *which* tokens made the code
vulnerable (and which reproduced the fix) instead of guessing from one number per sample.

Reading order (everything but :class:`RolloutScorer` is a pure function of its arguments):

1. :class:`RewardConfig` -- the constants, each with its reason.
2. Positions: :func:`line_col_to_offset` and :func:`finding_char_span` turn a finding's
   1-based line/column region into a character span; :func:`locate_code` finds where the
   extracted code sits in the response.
3. Tokens: :func:`char_spans_to_token_mask` turns character spans into a token mask through
   the tokenizer's offset mapping; :func:`decode_with_offsets` gives that mapping for
   *generated* token ids (re-tokenising the text could split it differently).
4. Secure spans: :func:`secure_span_matches` finds the reference fix's secure code in a
   response, whitespace-insensitively.
5. The reward: :func:`reward_breakdown` / :func:`token_level_rewards`, and
   :func:`instance_level_rewards` (the ablation: the same total on the last token).
6. :func:`apply_kl` -- the per-token KL penalty to the reference model.
7. :class:`RolloutScorer` -- the one place srcode touches vul2safe's scanner registry: extract
   code from a batch of rollouts, scan them all in ONE ``scan_samples`` call, score each.

Units: a finding's lines and columns are 1-based and its end column is exclusive
(:class:`vul2safe.schema.Finding`); a column counts Python ``str`` characters (code points),
``0`` means "unknown". Character spans and token offsets are ``[start, end)`` indices into
the response string, as a fast tokenizer's ``offset_mapping`` gives them.

torch is imported inside the functions that build tensors, so ``srcode --help`` (which may
import this module for :class:`RewardConfig`) stays fast.
"""

from __future__ import annotations

import bisect
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from vul2safe.errors import UsageError
from vul2safe.schema import Finding, Severity

if TYPE_CHECKING:
    import torch

    from vul2safe.cache import Cache
    from vul2safe.scanning import ScanOptions

__all__ = [
    "RewardBreakdown",
    "RewardConfig",
    "RewardStats",
    "Rollout",
    "RolloutReward",
    "RolloutScorer",
    "ScoredBatch",
    "apply_kl",
    "char_spans_to_token_mask",
    "collapse_to_last_token",
    "decode_with_offsets",
    "finding_char_span",
    "instance_level_rewards",
    "line_col_to_offset",
    "locate_code",
    "reward_breakdown",
    "secure_span_matches",
    "stack_rewards",
    "token_level_rewards",
]

Span = tuple[int, int]


# ------------------------------------------------------------------------------ 1. config


@dataclass
class RewardConfig:
    """The reward's constants (the paper's are not public; these are ours, with reasons).

    Scale: a clean, valid answer earns ``clean_bonus`` (+1); a vulnerable one loses about
    ``vuln_penalty`` (-1) per high-severity region and earns no clean bonus, so "vulnerable
    vs clean" is a gap of about 2 -- large next to the per-token KL (``kl_coef`` 0.05 times a
    log-ratio that is usually well below 1) and of the same size as ``tests_bonus``, so the
    policy cannot buy security by giving up function, or the reverse.
    """

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
            "help": "Penalty (<= 0) for a token inside a vulnerable region, times the "
            "finding's severity weight. With normalize_region_penalty it is the penalty of "
            "the whole region, spread evenly over its tokens."
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
            "vuln_penalty * weight in total however many tokens it spans. On by default: "
            "otherwise a 40-token region (-40) drowns every sequence term (+-1), the total "
            "depends on the tokenizer, and the cheapest fix is writing the same weakness "
            "in fewer tokens. Off: every token in the region gets the full penalty."
        },
    )
    secure_bonus: float = field(
        default=0.1,
        metadata={
            "help": "Bonus per token that reproduces a reference secure span (the fix's "
            "code), on tokens not inside a penalised region. Per token, so it is small: a "
            "typical 10-token secure line earns about +1, the size of clean_bonus. Each "
            "reference span is rewarded at most once (its first match), so repeating it "
            "earns nothing more."
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
            "help": "Sequence term on the last token when valid code was scanned and has "
            "no finding at or above clean_min_severity. Withheld when no scanner could scan "
            "the code: unscanned is not clean."
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
    tests_bonus: float = field(
        default=1.0,
        metadata={
            "help": "Sequence term on the last token when the task has tests and they pass. "
            "As large as clean_bonus so that trivial 'secure' code (e.g. 'pass') is not "
            "the best answer."
        },
    )
    invalid_penalty: float = field(
        default=-1.0,
        metadata={
            "help": "Sequence term (<= 0) on the last token when the output is not valid "
            "code (no code, unparsable, truncated, refusal). Such outputs never get the "
            "clean bonus, so refusing cannot be a way to look secure."
        },
    )
    kl_coef: float = field(
        default=0.05,
        metadata={
            "help": "Coefficient of the per-token KL penalty to the reference model "
            "(apply_kl); 0.05 is TRL's PPO default."
        },
    )

    def __post_init__(self) -> None:
        if self.granularity not in ("token", "instance"):
            raise UsageError(f"granularity must be 'token' or 'instance', got {self.granularity!r}")
        if self.vuln_penalty > 0 or self.invalid_penalty > 0:
            raise UsageError("vuln_penalty and invalid_penalty are penalties: use values <= 0")
        if min(self.weight_high, self.weight_medium, self.weight_low) < 0:
            raise UsageError("severity weights must be >= 0 (the sign is in vuln_penalty)")
        Severity.parse(self.clean_min_severity)

    def severity_weight(self, severity: Severity | str) -> float:
        """The weight of a finding of ``severity``."""
        level = Severity.parse(severity)
        return {
            Severity.HIGH: self.weight_high,
            Severity.MEDIUM: self.weight_medium,
            Severity.LOW: self.weight_low,
        }[level]


# ---------------------------------------------------------------------------- 2. positions

# Line terminators as scanners count them (Python's tokenizer, SARIF): \r\n, \r and \n.
# Not str.splitlines(), which also breaks at \v, \f, \x1c and \u2028.
_EOL = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class _Lines:
    """Where each line of a text starts and where its content ends (before the terminator)."""

    starts: list[int]
    ends: list[int]

    @classmethod
    def of(cls, text: str) -> _Lines:
        starts, ends = [0], []
        for match in _EOL.finditer(text):
            ends.append(match.start())
            starts.append(match.end())
        ends.append(len(text))
        return cls(starts, ends)

    def index_of(self, offset: int) -> int:
        """0-based index of the line holding character ``offset``."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)


def line_col_to_offset(text: str, line: int, col: int) -> int:
    """The ``str`` index of 1-based ``line``/``col`` in ``text``.

    ``col`` 0 (unknown) or less means the start of the line; a line or column out of range is
    clamped (to the first/last line, to the line's end before its terminator), so the result
    is always a valid index. CRLF and lone CR end lines like LF.
    """
    lines = _Lines.of(text)
    index = min(max(line, 1), len(lines.starts)) - 1
    if col <= 0:
        return lines.starts[index]
    return min(lines.starts[index] + col - 1, lines.ends[index])


def _line_bounds(lines: _Lines, code_offset: int, code_indent: int, code_line: int) -> Span | None:
    """``[start, end)`` in the response of 1-based line ``code_line`` of code that starts at
    ``code_offset`` (its first line) and whose later lines were dedented by ``code_indent``;
    None when that line is not in the response."""
    first = lines.index_of(code_offset)
    index = first + code_line - 1
    if code_line < 1 or index >= len(lines.starts):
        return None
    end = lines.ends[index]
    start = code_offset if code_line == 1 else lines.starts[index] + code_indent
    return min(start, end), end


def _strip_span(text: str, start: int, end: int) -> Span:
    """Drop leading/trailing blanks: a whole-line region is the code, not its indentation
    (with byte-level BPE the indentation usually belongs to the previous line's newline
    token, which did nothing wrong)."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _located_span(
    text: str, lines: _Lines, finding: Finding, code_offset: int, code_indent: int
) -> Span | None:
    first = _line_bounds(lines, code_offset, code_indent, finding.start_line)
    if first is None:
        return None
    available = len(lines.starts) - lines.index_of(code_offset)
    end_line = min(max(finding.end_line, finding.start_line), available)
    last = _line_bounds(lines, code_offset, code_indent, end_line)
    assert last is not None  # end_line is clamped into the available lines
    whole_start, whole_end = _strip_span(text, first[0], last[1])

    def at(bounds: Span, col: int) -> int:
        return min(bounds[0] + col - 1, bounds[1])

    start = at(first, finding.start_column) if finding.start_column > 0 else whole_start
    end = at(last, finding.end_column) if finding.end_column > 0 else whole_end
    if end <= start:  # inverted or empty column range (a tool's missing end column): lines
        start, end = whole_start, whole_end
    return (start, end) if end > start else None


def finding_char_span(text: str, finding: Finding) -> Span | None:
    """The ``[start, end)`` character span of ``finding`` in ``text`` (the scanned code).

    Known columns give the exact region; an unknown column (0) extends the region to the
    first/last non-blank character of its line, so both unknown = the whole line(s) without
    their indentation. An end before the start (seen when a tool omits the end column) also
    falls back to whole lines. None when the finding's first line is not in ``text`` (line
    < 1 or past the end) or the region is blank; an end line past the end is clamped.
    """
    return _located_span(text, _Lines.of(text), finding, 0, 0)


def locate_code(response: str, code: str) -> tuple[int, int] | None:
    """Where :func:`vul2safe.extract.extract_code`'s ``code`` sits in ``response``:
    ``(offset of its first character, indent removed from its later lines)``, or None.

    Extraction normalises line endings, drops blank lines around a block and removes a
    fence's indentation (a fence inside a list item), so the code is not always a verbatim
    substring; it is always a run of the response's lines, each possibly dedented, which is
    what this matches. The first match wins (a model repeating its answer gets its first
    copy penalised).
    """
    code_lines = code.split("\n")
    if code_lines and code_lines[-1] == "":
        code_lines.pop()  # chat-mode code ends with one newline
    if not "".join(code_lines).strip():
        return None
    lines = _Lines.of(response)
    texts = [response[s:e] for s, e in zip(lines.starts, lines.ends, strict=True)]
    head = code_lines[0]
    for k in range(len(texts) - len(code_lines) + 1):
        if not texts[k].endswith(head):
            continue
        prefix = texts[k][: len(texts[k]) - len(head)]
        indents = [len(prefix), 0] if prefix and not prefix.strip() else [0]
        for indent in indents:
            if all(
                _dedent(texts[k + i], indent) == code_lines[i] for i in range(1, len(code_lines))
            ):
                return lines.starts[k] + len(prefix), indent
    return None


def _dedent(line: str, indent: int) -> str:
    """Remove up to ``indent`` leading blanks, as extract_code does to a fenced block."""
    i = 0
    while i < indent and i < len(line) and line[i] in " \t":
        i += 1
    return line[i:]


# ------------------------------------------------------------------------------- 3. tokens


def _offsets_tensor(offsets: Sequence[Span] | torch.Tensor) -> torch.Tensor:
    import torch

    return torch.as_tensor(offsets, dtype=torch.long).reshape(-1, 2)


def _region_masks(offsets: torch.Tensor, spans: Sequence[Span]) -> torch.Tensor:
    """``(len(spans), T)`` booleans: token ``t`` overlaps span ``s`` by at least 1 char."""
    import torch

    spans_t = torch.as_tensor(list(spans), dtype=torch.long).reshape(-1, 2)
    overlap = torch.minimum(offsets[None, :, 1], spans_t[:, None, 1]) - torch.maximum(
        offsets[None, :, 0], spans_t[:, None, 0]
    )
    return overlap >= 1


def char_spans_to_token_mask(
    offsets: Sequence[Span] | torch.Tensor, spans: Sequence[Span]
) -> torch.Tensor:
    """``(T,)`` float mask: 1.0 for each token overlapping any span by at least one character.

    A token straddling a span's boundary counts as inside: it wrote part of the region, and
    BPE merges such as ``"(cmd"`` or ``" shell"`` routinely cross the scanner's column
    boundaries, so requiring full containment would miss the tokens that matter. Tokens with
    empty offsets (special tokens, ``(0, 0)``) are never inside.
    """
    offsets_t = _offsets_tensor(offsets)
    return _region_masks(offsets_t, spans).any(dim=0).float()


class _Tokenizer(Protocol):
    all_special_ids: list[int]

    def decode(self, token_ids: list[int], **kwargs: Any) -> str: ...


def decode_with_offsets(
    tokenizer: _Tokenizer, token_ids: Sequence[int], *, skip_special_tokens: bool = True
) -> tuple[str, list[Span]]:
    """Decode generated ``token_ids`` and give each token its ``[start, end)`` in the text.

    Why not re-tokenise the text: a policy may sample a non-canonical split, and the reward
    must line up with the tokens whose log-probabilities PPO updates. Decoding is
    incremental over a short window (the last emitted chunk, so word-initial spaces and byte
    pieces decode in context, as vLLM's detokenizer does): O(T). A token holding part of a
    multi-byte character spans that whole character, the way a fast tokenizer's offset
    mapping does; special tokens get an empty span at the current end. Use the returned
    text as the response: it is what the offsets index.
    """
    ids = [int(i) for i in token_ids]
    special = set(tokenizer.all_special_ids) if skip_special_tokens else set()

    def decode(window: list[int]) -> str:
        return tokenizer.decode(
            window, skip_special_tokens=skip_special_tokens, clean_up_tokenization_spaces=False
        )

    text = ""
    offsets: list[Span] = [(0, 0)] * len(ids)
    prefix_offset = read_offset = 0
    prefix_text = ""  # decode(ids[prefix_offset:read_offset]): the tail of ``text``
    before = ""  # decode(ids[prefix_offset:i]): the window before token i
    for i, token in enumerate(ids):
        if token in special:
            offsets[i] = (len(text), len(text))
            continue
        base = len(text) - len(prefix_text)  # where the window starts in ``text``
        after = decode(ids[prefix_offset : i + 1])
        # A trailing U+FFFD is a character still being written: the token touches it.
        offsets[i] = (base + len(before.rstrip("\ufffd")), base + len(after))
        before = after
        if len(after) > len(prefix_text) and not after.endswith("\ufffd"):
            text += after[len(prefix_text) :]
            prefix_offset, read_offset = read_offset, i + 1
            prefix_text = before = decode(ids[prefix_offset:read_offset])
    rest = decode(ids[prefix_offset:])  # bytes that never formed a character
    if len(rest) > len(prefix_text):
        text += rest[len(prefix_text) :]
    n = len(text)
    return text, [(min(s, n), min(e, n)) for s, e in offsets]


# ------------------------------------------------------------------------- 4. secure spans

_WORD = re.compile(r"\w")


def _snippet_pattern(snippet: str, min_chars: int) -> re.Pattern[str] | None:
    """A regex matching ``snippet`` with any whitespace layout that means the same code.

    Between two word characters, whitespace in the snippet must be whitespace in the
    response and its absence must be absence (``return x`` is not ``returnx``); around
    punctuation whitespace is optional (``f(a, b)`` matches ``f( a,b )``). The ends must fall
    on word boundaries, so ``x = 1`` does not match inside ``max = 1``.
    """
    parts: list[str] = []
    previous = ""
    gap = False
    count = 0
    for ch in snippet:
        if ch.isspace():
            gap = bool(previous)
            continue
        if previous:
            both_words = bool(_WORD.match(previous) and _WORD.match(ch))
            parts.append((r"\s+" if gap else "") if both_words else r"\s*")
        parts.append(re.escape(ch))
        previous, gap, count = ch, False, count + 1
    if count < max(1, min_chars):
        return None
    head = r"(?<!\w)" if _WORD.match(snippet.strip()[0]) else ""
    tail = r"(?!\w)" if _WORD.match(previous) else ""
    return re.compile(head + "".join(parts) + tail)


def secure_span_matches(
    response: str, secure_snippets: Sequence[str], *, start: int = 0, min_chars: int = 1
) -> list[Span]:
    """Character spans of ``response`` (searched from ``start``) that reproduce a reference
    secure span, whitespace-insensitively (see :func:`_snippet_pattern`).

    At most one span per snippet -- its first match -- so a policy cannot farm the bonus by
    repeating the fix; snippets with fewer than ``min_chars`` non-blank characters are
    skipped. Sorted by position; spans of different snippets may overlap.
    """
    spans: list[Span] = []
    for snippet in secure_snippets:
        pattern = _snippet_pattern(snippet, min_chars)
        match = pattern.search(response, start) if pattern else None
        if match is not None:
            spans.append(match.span())
    return sorted(spans)


# ------------------------------------------------------------------------------ 5. reward


@dataclass
class RewardBreakdown:
    """The parts of one rollout's reward, kept apart for logging and for tests.

    ``penalty`` and ``bonus`` are ``(T,)`` per-token terms; ``sequence`` is the scalar placed
    on the last token; ``findings`` are the ones that count (inside the response).
    """

    penalty: torch.Tensor
    bonus: torch.Tensor
    sequence: float
    findings: list[Finding]
    vulnerable: bool

    def total(self) -> torch.Tensor:
        """Token-level rewards: per-token terms plus the sequence term on the last token."""
        rewards = self.penalty + self.bonus
        if rewards.numel():
            rewards[-1] += self.sequence
        return rewards


def reward_breakdown(
    response_text: str,
    offsets: Sequence[Span] | torch.Tensor,
    findings: Sequence[Finding],
    *,
    secure_snippets: Sequence[str] = (),
    code_offset: int | None = 0,
    code_indent: int = 0,
    tests_passed: bool | None = None,
    invalid: bool = False,
    scanned: bool = True,
    config: RewardConfig | None = None,
) -> RewardBreakdown:
    """Compute each term of :func:`token_level_rewards` (same arguments)."""
    import torch

    config = config or RewardConfig()
    offsets_t = _offsets_tensor(offsets)
    n_tokens = offsets_t.shape[0]
    penalty = torch.zeros(n_tokens, dtype=torch.float32)
    sequence = 0.0

    # Vulnerable regions. Where regions overlap a token takes the most severe one, not the
    # sum: Bandit and Semgrep reporting the same call must not double its penalty.
    counted: list[Finding] = []
    lines = _Lines.of(response_text)
    inside_response = code_offset is not None and 0 <= code_offset <= len(response_text)
    for finding in findings:
        weight = config.severity_weight(finding.severity)
        if code_offset is None:  # code not found in the response: cannot place the penalty
            counted.append(finding)
            sequence += config.vuln_penalty * weight
            continue
        span = (
            _located_span(response_text, lines, finding, code_offset, code_indent)
            if inside_response
            else None
        )
        if span is None:
            continue  # outside the response (e.g. in a prompt): not the model's doing
        counted.append(finding)
        mask = _region_masks(offsets_t, [span])[0]
        size = int(mask.sum())
        if size == 0 or weight == 0:
            continue
        value = config.vuln_penalty * weight / (size if config.normalize_region_penalty else 1)
        penalty = torch.where(mask, torch.minimum(penalty, torch.tensor(value)), penalty)

    # Secure spans: only on tokens no region penalised (a flagged line earns nothing).
    bonus = torch.zeros(n_tokens, dtype=torch.float32)
    if secure_snippets and config.secure_bonus:
        spans = secure_span_matches(
            response_text,
            secure_snippets,
            start=code_offset if inside_response and code_offset else 0,
            min_chars=config.secure_min_chars,
        )
        if spans:
            secure = _region_masks(offsets_t, spans).any(dim=0) & (penalty == 0)
            bonus = secure.float() * config.secure_bonus

    # Sequence terms (on the last token).
    threshold = Severity.parse(config.clean_min_severity)
    vulnerable = any(Severity.parse(f.severity).at_least(threshold) for f in counted)
    if invalid:
        sequence += config.invalid_penalty
    elif scanned and not vulnerable:
        sequence += config.clean_bonus
    if tests_passed:
        sequence += config.tests_bonus
    return RewardBreakdown(penalty, bonus, sequence, counted, vulnerable)


def token_level_rewards(
    response_text: str,
    offsets: Sequence[Span] | torch.Tensor,
    findings: Sequence[Finding],
    *,
    secure_snippets: Sequence[str] = (),
    code_offset: int | None = 0,
    code_indent: int = 0,
    tests_passed: bool | None = None,
    invalid: bool = False,
    scanned: bool = True,
    config: RewardConfig | None = None,
) -> torch.Tensor:
    """SRCode's ``(T,)`` reward for one response whose tokens span ``offsets``.

    ``findings`` are located in the extracted code, which starts at ``code_offset`` in
    ``response_text`` (its later lines dedented by ``code_indent``; see :func:`locate_code`).
    Code lines are matched to response lines, so a CRLF response and its LF-normalised code
    still line up. Findings outside the response are ignored; ``code_offset=None`` means the
    code could not be found in the response, and each finding's region penalty (as if
    normalised) lands on the last token instead.

    Per token: ``vuln_penalty * weight`` (divided by the region's token count when
    ``normalize_region_penalty``) inside a vulnerable region, the most severe region where
    several overlap; else ``secure_bonus`` on tokens reproducing a secure snippet. Last
    token: ``invalid_penalty`` if ``invalid``, else ``clean_bonus`` when ``scanned`` and no
    finding reaches ``clean_min_severity``; plus ``tests_bonus`` when ``tests_passed`` is True
    (None: the task has no tests). The KL term is separate (:func:`apply_kl`).
    """
    return reward_breakdown(
        response_text,
        offsets,
        findings,
        secure_snippets=secure_snippets,
        code_offset=code_offset,
        code_indent=code_indent,
        tests_passed=tests_passed,
        invalid=invalid,
        scanned=scanned,
        config=config,
    ).total()


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
    findings: Sequence[Finding],
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


# --------------------------------------------------------------------------------- 6. KL


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


# ------------------------------------------------------------------------------ 7. scorer


@dataclass(frozen=True)
class Rollout:
    """One generated answer to score.

    ``offsets`` are its tokens' ``[start, end)`` spans in ``response``
    (:func:`decode_with_offsets`, or a fast tokenizer's offset mapping); ``secure_snippets``
    the reference fix's secure spans (PrimeVul+ ``localize``); ``tests_passed`` None when the
    task has no tests; ``finish_reason`` as the generator reported it (``"length"`` marks
    truncation).
    """

    prompt: str
    response: str
    offsets: Sequence[Span]
    language: str
    secure_snippets: Sequence[str] = ()
    tests_passed: bool | None = None
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


@dataclass
class RewardStats:
    """Batch statistics for the training log; denominators are all rollouts."""

    n: int
    vulnerable: int
    invalid: int
    unscanned: int
    unlocated: int
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
            f"{prefix}invalid": float(self.invalid),
            f"{prefix}unscanned": float(self.unscanned),
            f"{prefix}unlocated": float(self.unlocated),
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
    """Score a batch of rollouts: extract code, scan it all at once, compute each reward.

    The only place srcode touches vul2safe's scanner registry, so training rewards come from
    the very scanners ``vul2safe eval`` reports with. All rollouts' code goes to ONE
    ``scan_samples`` call (each tool starts once per batch) with the content-addressed cache
    on, so code the policy repeats is never scanned twice. Extraction and scanning follow
    :mod:`vul2safe.security`: only the model's own code is scanned, everything with code is
    scanned whatever its extraction class, and code no scanner could scan gets no clean bonus.
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

    def score(self, rollouts: Sequence[Rollout]) -> ScoredBatch:
        """Rewards for ``rollouts`` (input order), per :attr:`config`'s granularity."""
        from vul2safe.extract import OutputClass, canonical_language, extract_code
        from vul2safe.scanning import scan_samples
        from vul2safe.schema import Sample, SampleResult

        extractions = [
            extract_code(
                r.response,
                language=r.language,
                prompt=r.prompt if self.mode == "completion" else None,
                mode=self.mode,
                finish_reason=r.finish_reason,
            )
            for r in rollouts
        ]
        scan_of: dict[int, SampleResult] = {}
        for index, (rollout, ext) in enumerate(zip(rollouts, extractions, strict=True)):
            if ext.code.strip():
                sid = f"rollout-{index}"
                language = canonical_language(rollout.language)
                scan_of[index] = SampleResult(Sample(sid, ext.code, language, path=sid))
        started = time.perf_counter()
        if scan_of:
            scan_samples(
                list(scan_of.values()), self.scanners, self.scan_options, cache=self._scan_cache()
            )
        scan_seconds = time.perf_counter() - started

        scored: list[RolloutReward] = []
        for index, (rollout, ext) in enumerate(zip(rollouts, extractions, strict=True)):
            result = scan_of.get(index)
            ok_reports = [r for r in result.reports if r.ok] if result else []
            scanned = result is not None and result.error is None and bool(ok_reports)
            findings = [f for report in ok_reports for f in report.findings]
            located = locate_code(rollout.response, ext.code) if ext.code.strip() else (0, 0)
            code_offset, code_indent = located if located else (None, 0)
            breakdown = reward_breakdown(
                rollout.response,
                rollout.offsets,
                findings,
                secure_snippets=rollout.secure_snippets if ext.code.strip() else (),
                code_offset=code_offset,
                code_indent=code_indent,
                tests_passed=rollout.tests_passed,
                invalid=ext.status is not OutputClass.ok,
                scanned=scanned,
                config=self.config,
            )
            rewards = breakdown.total()
            if self.config.granularity == "instance":
                rewards = collapse_to_last_token(rewards)
            scored.append(
                RolloutReward(rewards, ext.status.value, ext.code, code_offset, scanned, breakdown)
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
            unscanned=sum(bool(item.code.strip()) and not item.scanned for item in scored),
            unlocated=sum(bool(item.code.strip()) and item.code_offset is None for item in scored),
            findings_per_cwe=dict(sorted(per_cwe.items())),
            mean_reward=sum(totals) / len(totals) if totals else 0.0,
            penalised_tokens=sum(int((i.breakdown.penalty < 0).sum()) for i in scored),
            secure_tokens=sum(int((i.breakdown.bonus > 0).sum()) for i in scored),
            scan_seconds=scan_seconds,
        )
