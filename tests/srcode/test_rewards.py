"""SRCode's token-level reward, checked against tensors computed by hand.

Most tests use a hand-written "tokenizer": the token offsets are written out literally (and
checked to tile the text), so every expected reward can be verified with a pencil. The last
tests use a real byte-level BPE tokenizer trained here and the real Bandit scanner.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest
import torch

from srcode.rewards import (
    RewardConfig,
    Rollout,
    RolloutScorer,
    apply_kl,
    char_spans_to_token_mask,
    collapse_to_last_token,
    decode_with_offsets,
    finding_char_span,
    instance_level_rewards,
    line_col_to_offset,
    locate_code,
    reward_breakdown,
    secure_span_matches,
    stack_rewards,
    token_level_rewards,
)
from vul2safe.errors import UsageError
from vul2safe.extract import extract_code
from vul2safe.schema import Finding, Severity

# One constant per term, so a hand-computed vector names the term it checks.
CONFIG = RewardConfig(
    vuln_penalty=-1.0,
    weight_high=1.0,
    weight_medium=0.6,
    weight_low=0.0,
    normalize_region_penalty=False,
    max_vuln_penalty=-10.0,  # loose, so the hand-computed regions are not rescaled
    secure_bonus=0.4,
    clean_bonus=1.0,
    functional_bonus=10.5,
    invalid_penalty=-12.0,
)


def finding(
    line: int,
    end_line: int | None = None,
    col: int = 0,
    end_col: int = 0,
    severity: str = "high",
    cwe: Sequence[str] = ("CWE-78",),
) -> Finding:
    return Finding(
        scanner="test",
        rule_id="T1",
        severity=Severity(severity),
        tool_severity=severity.upper(),
        message="test finding",
        path="sample.py",
        start_line=line,
        end_line=line if end_line is None else end_line,
        start_column=col,
        end_column=end_col,
        cwe=list(cwe),
    )


def tiles(text: str, offsets: Sequence[tuple[int, int]]) -> bool:
    """The hand-written offsets cover the text exactly, in order."""
    return "".join(text[s:e] for s, e in offsets) == text and all(
        a[1] == b[0] for a, b in pairwise(offsets)
    )


def close(actual: torch.Tensor, expected: Sequence[float]) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=torch.float32))


# ------------------------------------------------------------------------------ positions


def test_line_col_to_offset_counts_characters_and_clamps() -> None:
    text = "ab\ncd"
    assert line_col_to_offset(text, 2, 1) == 3
    assert line_col_to_offset(text, 2, 0) == 3  # unknown column: start of line
    assert line_col_to_offset(text, 1, 3) == 2  # exclusive end column = end of line
    assert line_col_to_offset(text, 1, 99) == 2  # clamped to the line's end
    assert line_col_to_offset(text, 99, 1) == 3  # clamped to the last line
    assert line_col_to_offset(text, 0, 2) == 1  # clamped to the first line


def test_line_col_to_offset_crlf_cr_and_multibyte() -> None:
    assert line_col_to_offset("ab\r\ncd\ref", 2, 2) == 5
    assert line_col_to_offset("ab\r\ncd\ref", 3, 1) == 7
    text = "é日本\n🙂x"  # 1-, 3- and 4-byte UTF-8 characters are one str index each
    assert line_col_to_offset(text, 2, 2) == 5
    assert text[5] == "x"


def test_finding_char_span_unknown_columns_is_the_whole_line_without_indent() -> None:
    text = "def f():\n    os.system(c)\n"
    assert finding_char_span(text, finding(2)) == (13, 25)
    assert text[13:25] == "os.system(c)"
    # only the start column known: from it to the end of the line
    assert finding_char_span(text, finding(2, col=7)) == (15, 25)
    # an end column before the start column (a tool's missing end): whole line
    assert finding_char_span(text, finding(2, col=7, end_col=1)) == (13, 25)


def test_finding_char_span_outside_the_text_is_none() -> None:
    text = "def f():\n    os.system(c)\n"
    assert finding_char_span(text, finding(0)) is None
    assert finding_char_span(text, finding(-3)) is None
    assert finding_char_span(text, finding(4)) is None
    assert finding_char_span(text, finding(3)) is None  # the empty line after the last \n
    # an end line past the end is clamped to the last line
    assert finding_char_span(text, finding(1, end_line=50)) == (0, 25)


def test_finding_char_span_multiline_with_columns() -> None:
    text = "x = f(\n    a,\n    b)\n"
    assert finding_char_span(text, finding(1, end_line=3, col=5, end_col=7)) == (4, 20)
    assert text[4:20] == "f(\n    a,\n    b)"


def test_locate_code_crlf_and_indented_fence() -> None:
    crlf = "```python\r\nimport os\r\nos.system(cmd)\r\n```\r\n"
    code = extract_code(crlf, language="python").code
    assert code == "import os\nos.system(cmd)\n"
    assert locate_code(crlf, code) == (11, 0)
    listed = "1. Do this:\n   ```python\n   import os\n   os.system(cmd)\n   ```\n"
    code = extract_code(listed, language="python").code
    assert code == "import os\nos.system(cmd)\n"  # extract_code removed the fence's indent
    assert locate_code(listed, code) == (28, 3)
    assert locate_code("nothing here\n", "import os\n") is None
    # completion mode: the continuation is verbatim, a leading blank line included
    assert locate_code("\n    return x\n", "\n    return x\n") == (0, 0)


# --------------------------------------------------------------------------------- tokens


def test_char_spans_to_token_mask_straddling_tokens_are_inside() -> None:
    offsets = [(0, 2), (2, 5), (5, 9), (9, 9), (9, 12)]
    # (2, 5) straddles the start: inside; (9, 12) only touches the end: outside;
    # (9, 9) is an empty special-token span: never inside.
    close(char_spans_to_token_mask(offsets, [(3, 9)]), [0, 1, 1, 0, 0])
    close(char_spans_to_token_mask(offsets, [(0, 1), (11, 20)]), [1, 0, 0, 0, 1])
    close(char_spans_to_token_mask(offsets, []), [0, 0, 0, 0, 0])
    assert char_spans_to_token_mask([], [(0, 3)]).shape == (0,)


# ------------------------------------------------------------------- the reward, by hand

# Multi-byte characters before the region, code inside a fence, tokens straddling both of
# the region's boundaries. Character indices:
#   "Voilà 日本 🙂:\n" 0-11, "```python\n" 12-21, "import os\n" 22-31,
#   "os.system(cmd)\n" 32-46, "```\n" 47-50
FENCED = "Voilà 日本 🙂:\n```python\nimport os\nos.system(cmd)\n```\n"
FENCED_OFFSETS = [
    (0, 5),  # 0 "Voilà"
    (5, 8),  # 1 " 日本"
    (8, 10),  # 2 " 🙂"
    (10, 12),  # 3 ":\n"
    (12, 22),  # 4 "```python\n"
    (22, 28),  # 5 "import"
    (28, 31),  # 6 " os"
    (31, 34),  # 7 "\nos"      straddles the region's start (32)
    (34, 41),  # 8 ".system"
    (41, 45),  # 9 "(cmd"
    (45, 47),  # 10 ")\n"      straddles the region's end (46)
    (47, 51),  # 11 "```\n"
]
SYSTEM_CALL = finding(2, col=1, end_col=15)  # "os.system(cmd)" on the code's line 2


def test_hand_offsets_tile_their_texts() -> None:
    assert tiles(FENCED, FENCED_OFFSETS)
    assert tiles(CRLF, CRLF_OFFSETS)
    assert tiles(INDENTED, INDENTED_OFFSETS)
    assert tiles(REPEATED, REPEATED_OFFSETS)


def test_region_after_multibyte_characters_with_straddling_tokens() -> None:
    code = extract_code(FENCED, language="python").code
    assert locate_code(FENCED, code) == (22, 0)
    rewards = token_level_rewards(
        FENCED, FENCED_OFFSETS, [SYSTEM_CALL], code_offset=22, config=CONFIG
    )
    # tokens 7-10 are in the region: -1 each; vulnerable, so no clean bonus at the end
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 0])


def test_normalised_region_and_severity_weight() -> None:
    normalised = dataclasses.replace(CONFIG, normalize_region_penalty=True)
    rewards = token_level_rewards(
        FENCED, FENCED_OFFSETS, [SYSTEM_CALL], code_offset=22, config=normalised
    )
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -0.25, -0.25, -0.25, -0.25, 0])
    medium = finding(2, col=1, end_col=15, severity="medium")
    rewards = token_level_rewards(FENCED, FENCED_OFFSETS, [medium], code_offset=22, config=CONFIG)
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -0.6, -0.6, -0.6, -0.6, 0])


def test_low_findings_cost_nothing_and_leave_the_clean_bonus() -> None:
    low = finding(1, severity="low")  # e.g. Bandit's "import subprocess"
    rewards = token_level_rewards(FENCED, FENCED_OFFSETS, [low], code_offset=22, config=CONFIG)
    close(rewards, [0] * 11 + [1.0])


def test_overlapping_regions_take_the_most_severe_not_the_sum() -> None:
    two_scanners = [SYSTEM_CALL, finding(2, col=1, end_col=10, severity="medium")]
    rewards = token_level_rewards(
        FENCED, FENCED_OFFSETS, two_scanners, code_offset=22, config=CONFIG
    )
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, 0])


# CRLF response; extract_code hands the scanner LF code. Indices: "```python\r\n" 0-10,
# "import os\r\n" 11-21, "os.system(cmd)\r\n" 22-37, "```\r\n" 38-42.
CRLF = "```python\r\nimport os\r\nos.system(cmd)\r\n```\r\n"
CRLF_OFFSETS = [
    (0, 11),  # 0 "```python\r\n"
    (11, 17),  # 1 "import"
    (17, 20),  # 2 " os"
    (20, 22),  # 3 "\r\n"
    (22, 24),  # 4 "os"
    (24, 36),  # 5 ".system(cmd)"
    (36, 43),  # 6 "\r\n```\r\n"
]


def test_crlf_response_maps_lines_not_characters() -> None:
    # Adding LF-code character offsets to 11 would give (21, 35) and hit the "\r\n" token.
    rewards = token_level_rewards(CRLF, CRLF_OFFSETS, [SYSTEM_CALL], code_offset=11, config=CONFIG)
    close(rewards, [0, 0, 0, 0, -1, -1, 0])


# Fence indented inside a list item: extract_code dedents the block by 3.
# "1. Do this:\n" 0-11, "   ```python\n" 12-24, "   import os\n" 25-37,
# "   os.system(cmd)\n" 38-55 (the call is 41-54), "   ```\n" 56-62
INDENTED = "1. Do this:\n   ```python\n   import os\n   os.system(cmd)\n   ```\n"
INDENTED_OFFSETS = [
    (0, 12),  # 0 "1. Do this:\n"
    (12, 25),  # 1 "   ```python\n"
    (25, 34),  # 2 "   import"
    (34, 37),  # 3 " os"
    (37, 41),  # 4 "\n   "
    (41, 43),  # 5 "os"
    (43, 55),  # 6 ".system(cmd)"
    (55, 63),  # 7 "\n   ```\n"
]


def test_indented_fence_shifts_columns_by_the_removed_indent() -> None:
    rewards = token_level_rewards(
        INDENTED, INDENTED_OFFSETS, [SYSTEM_CALL], code_offset=28, code_indent=3, config=CONFIG
    )
    close(rewards, [0, 0, 0, 0, 0, -1, -1, 0])


# No fence: the response is the code. "def f(cmd):\n" 0-11, "    os.system(cmd)\n" 12-30
PLAIN = "def f(cmd):\n    os.system(cmd)\n"
PLAIN_OFFSETS = [
    (0, 3),  # 0 "def"
    (3, 5),  # 1 " f"
    (5, 11),  # 2 "(cmd):"
    (11, 16),  # 3 "\n    "  the indentation: not part of a whole-line region
    (16, 18),  # 4 "os"
    (18, 25),  # 5 ".system"
    (25, 30),  # 6 "(cmd)"
    (30, 31),  # 7 "\n"
]


def test_unknown_columns_penalise_the_whole_line_and_functional_counts() -> None:
    assert tiles(PLAIN, PLAIN_OFFSETS)
    normalised = dataclasses.replace(CONFIG, normalize_region_penalty=True)
    rewards = token_level_rewards(
        PLAIN, PLAIN_OFFSETS, [finding(2)], functional=True, config=normalised
    )
    third = -1 / 3
    close(rewards, [0, 0, 0, 0, third, third, third, 10.5])


def test_findings_penalty_is_bounded_per_answer() -> None:
    bounded = dataclasses.replace(CONFIG, max_vuln_penalty=-2.0, invalid_penalty=-3.0)
    rewards = token_level_rewards(
        FENCED, FENCED_OFFSETS, [SYSTEM_CALL], code_offset=22, config=bounded
    )
    # 4 tokens at -1 = -4 < -2: every region scaled by 2 / 4
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -0.5, -0.5, -0.5, -0.5, 0])


def test_findings_outside_the_response_are_ignored() -> None:
    outside = [finding(0), finding(-2), finding(99), finding(-5, end_line=-1)]
    rewards = token_level_rewards(PLAIN, PLAIN_OFFSETS, outside, config=CONFIG)
    close(rewards, [0, 0, 0, 0, 0, 0, 0, 1.0])  # nothing counted: clean
    past_end = token_level_rewards(
        PLAIN, PLAIN_OFFSETS, [finding(1)], code_offset=500, config=CONFIG
    )
    close(past_end, [0, 0, 0, 0, 0, 0, 0, 1.0])


def test_unlocated_code_puts_the_penalty_on_the_last_token() -> None:
    rewards = token_level_rewards(
        PLAIN,
        PLAIN_OFFSETS,
        [finding(2), finding(1, severity="medium")],
        code_offset=None,
        config=CONFIG,
    )
    close(rewards, [0, 0, 0, 0, 0, 0, 0, -1.6])


# The same safe call twice. "a = run(args, check=True)\n" 0-25, "b = run(...)\n" 26-51
REPEATED = "a = run(args, check=True)\nb = run(args, check=True)\n"
REPEATED_OFFSETS = [
    (0, 1),  # 0 "a"
    (1, 3),  # 1 " ="
    (3, 7),  # 2 " run"   straddles the match's start (4)
    (7, 13),  # 3 "(args,"
    (13, 19),  # 4 " check"
    (19, 25),  # 5 "=True)"
    (25, 27),  # 6 "\nb"
    (27, 29),  # 7 " ="
    (29, 33),  # 8 " run"
    (33, 39),  # 9 "(args,"
    (39, 45),  # 10 " check"
    (45, 51),  # 11 "=True)"
    (51, 52),  # 12 "\n"
]


def test_secure_span_bonus_once_per_snippet_a_fixed_share() -> None:
    snippets = ["run(args, check=True)", "}"]  # "}" is too short to mean anything
    assert secure_span_matches(REPEATED, snippets, min_chars=4) == [(4, 25)]
    rewards = token_level_rewards(
        REPEATED, REPEATED_OFFSETS, [], secure_snippets=snippets, config=CONFIG
    )
    # the whole secure_bonus (0.4, one valid snippet) spread over the 4 tokens of its match
    close(rewards, [0, 0, 0.1, 0.1, 0.1, 0.1, 0, 0, 0, 0, 0, 0, 1.0])


def test_secure_bonus_never_on_penalised_tokens() -> None:
    flagged = finding(1, col=5, end_col=14)  # "run(args," -> tokens 2 and 3
    rewards = token_level_rewards(
        REPEATED,
        REPEATED_OFFSETS,
        [flagged],
        secure_snippets=["run(args, check=True)"],
        config=CONFIG,
    )
    close(rewards, [0, 0, -1, -1, 0.2, 0.2, 0, 0, 0, 0, 0, 0, 0])


def test_secure_span_matches_respects_words_and_layout() -> None:
    assert secure_span_matches("max = 1\nx = 1\n", ["x = 1"]) == [(8, 13)]
    assert secure_span_matches("returnx\nreturn  x", ["return x"]) == [(8, 17)]
    assert secure_span_matches("f( a,b )", ["f(a, b)"]) == []  # no padding around punctuation
    assert secure_span_matches("f(a,  b)", ["f(a, b)"]) == [(0, 8)]
    assert secure_span_matches("if ok:\r\n  go()", ["if ok:\n    go()"]) == [(0, 14)]
    assert secure_span_matches("a = 1", ["   ", ""]) == []
    assert secure_span_matches("x = 1; x = 1", ["x = 1"], start=1) == [(7, 12)]


def test_sequence_terms_land_on_the_last_token() -> None:
    invalid = token_level_rewards(
        PLAIN, PLAIN_OFFSETS, [], invalid=True, functional=False, config=CONFIG
    )
    close(invalid, [0, 0, 0, 0, 0, 0, 0, -12.0])  # no clean bonus for invalid output
    missing = token_level_rewards(PLAIN, PLAIN_OFFSETS, [], functional=False, config=CONFIG)
    close(missing, [0] * 8)  # not implementing the task: no clean bonus either
    unscanned = token_level_rewards(PLAIN, PLAIN_OFFSETS, [], scanned=False, config=CONFIG)
    close(unscanned, [0] * 8)  # unscanned is not clean
    both = token_level_rewards(PLAIN, PLAIN_OFFSETS, [], functional=True, config=CONFIG)
    close(both, [0, 0, 0, 0, 0, 0, 0, 11.5])
    assert token_level_rewards("", [], [], config=CONFIG).shape == (0,)


@pytest.mark.parametrize(
    ("text", "offsets", "kwargs"),
    [
        (FENCED, FENCED_OFFSETS, {"findings": [SYSTEM_CALL], "code_offset": 22}),
        (
            REPEATED,
            REPEATED_OFFSETS,
            {"findings": [], "secure_snippets": ["run(args, check=True)"]},
        ),
        (PLAIN, PLAIN_OFFSETS, {"findings": [finding(2)], "functional": True}),
    ],
)
def test_instance_granularity_same_sum_all_on_the_last_token(
    text: str, offsets: list[tuple[int, int]], kwargs: dict[str, Any]
) -> None:
    findings = kwargs.pop("findings")
    token = token_level_rewards(text, offsets, findings, config=CONFIG, **kwargs)
    instance = instance_level_rewards(text, offsets, findings, config=CONFIG, **kwargs)
    torch.testing.assert_close(instance.sum(), token.sum())
    assert torch.count_nonzero(instance[:-1]) == 0
    torch.testing.assert_close(collapse_to_last_token(token), instance)


def test_breakdown_parts_add_up() -> None:
    parts = reward_breakdown(
        REPEATED,
        REPEATED_OFFSETS,
        [finding(2)],
        secure_snippets=["a = run(args"],
        functional=True,
        config=CONFIG,
    )
    assert parts.vulnerable and parts.sequence == 10.5
    assert parts.terms() == pytest.approx({"security": -6.0, "secure": 0.4, "functional": 10.5})
    # line 2 (26-51, "\nb" straddles it) -> tokens 6-11; "a = run(args" (0-12) -> tokens 0-3
    close(parts.penalty, [0] * 6 + [-1] * 6 + [0])
    close(parts.bonus, [0.1] * 4 + [0] * 9)
    close(parts.total(), [0.1] * 4 + [0] * 2 + [-1] * 6 + [10.5])


def test_stack_rewards_right_pads() -> None:
    stacked = stack_rewards([torch.tensor([1.0, 2.0]), torch.tensor([3.0])])
    close(stacked, [[1, 2], [3, 0]])
    assert stack_rewards([torch.tensor([1.0])], length=3).shape == (1, 3)


# ------------------------------------------------------------------------------------- KL


def test_apply_kl_by_hand() -> None:
    rewards = torch.tensor([[0.0, -0.5, 1.0], [0.2, 0.0, 0.0]])
    logprobs = torch.tensor([[-1.0, -2.0, -0.5], [-0.1, -0.3, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.2, -0.3, -1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    shaped, kl = apply_kl(rewards, logprobs, ref, 0.1, mask)
    # kl = logp - ref_logp = [[0.5, -1, 0], [0.1, 0, -8 -> masked]]
    close(kl, [[0.5, -1.0, 0.0], [0.1, 0.0, 0.0]])
    close(shaped, [[-0.05, -0.4, 1.0], [0.19, 0.0, 0.0]])
    unmasked, _ = apply_kl(rewards[0], logprobs[0], ref[0], 1.0)
    close(unmasked, [-0.5, 0.5, 1.0])
    with pytest.raises(ValueError, match="shapes differ"):
        apply_kl(rewards, logprobs[:, :2], ref, 0.1)


# --------------------------------------------------------------------------------- config


def test_config_fields_all_have_help_and_bad_values_fail() -> None:
    for f in dataclasses.fields(RewardConfig):
        assert f.metadata.get("help"), f.name
    with pytest.raises(UsageError, match="<= 0"):
        RewardConfig(vuln_penalty=1.0)
    with pytest.raises(UsageError, match="granularity"):
        RewardConfig(granularity="sequence")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="severity"):
        RewardConfig(clean_min_severity="critical")  # type: ignore[arg-type]
    # settings that would break the tiers are refused, each naming the ordering it breaks
    with pytest.raises(UsageError, match="below max_vuln_penalty"):
        RewardConfig(invalid_penalty=-1.0)
    with pytest.raises(UsageError, match="does not implement"):
        RewardConfig(functional_bonus=1.0)
    with pytest.raises(UsageError, match="buy back"):
        RewardConfig(secure_bonus=5.0)


# ---------------------------------------------------- a real tokenizer, a real scanner


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """A byte-level BPE (GPT-2/Qwen style) trained on a few lines of Python, in ~0.1 s."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [
        "import subprocess\nimport os\n\n\ndef run(cmd: str) -> None:\n"
        "    subprocess.call(cmd, shell=True)\n    subprocess.run(args, check=True)\n"
        "    return os.path.join(base, name)\n# Voilà: 日本語のコメント 🙂\n"
    ] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|endoftext|>")


def test_decode_with_offsets_matches_the_fast_tokenizer(tokenizer: Any) -> None:
    text = "# Voilà 日本 🙂 x\nsubprocess.call(cmd, shell=True)\n"
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids = [*encoded["input_ids"], tokenizer.eos_token_id]
    decoded, offsets = decode_with_offsets(tokenizer, ids)
    assert decoded == text
    assert offsets[:-1] == [tuple(o) for o in encoded["offset_mapping"]]
    assert offsets[-1] == (len(text), len(text))  # the special token: empty, at the end


VULNERABLE = (
    "Here is the code:\n```python\nimport subprocess\n\n\ndef run(cmd: str) -> None:\n"
    "    subprocess.call(cmd, shell=True)\n```\n"
)
SAFE = (
    "```python\nimport subprocess\n\n\ndef run(args: list[str]) -> None:\n"
    "    subprocess.run(args, check=True)\n```\n"
)


def test_scorer_with_real_tokenizer_and_bandit(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vul2safe.scanning

    calls: list[int] = []
    real_scan = vul2safe.scanning.scan_samples

    def counting_scan(samples: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(len(samples))
        return real_scan(samples, *args, **kwargs)

    monkeypatch.setattr(vul2safe.scanning, "scan_samples", counting_scan)

    def rollout(response: str) -> Rollout:
        enc = tokenizer(response, add_special_tokens=False, return_offsets_mapping=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
        return Rollout("Write run().", response, offsets, "python")

    rollouts = [rollout(VULNERABLE), rollout(SAFE), rollout("I cannot help with that.")]
    config = RewardConfig()  # the defaults: normalised regions, clean +1, functional +2.5
    batch = RolloutScorer(config, scanners=["bandit"])(rollouts)
    assert calls == [2]  # both rollouts with code in ONE scan; the refusal has no code

    # The B602 (shell=True) finding's line: exactly the tokens overlapping it are penalised.
    start = VULNERABLE.index("subprocess.call")
    end = start + len("subprocess.call(cmd, shell=True)")
    offsets = rollouts[0].offsets
    expected = [i for i, (s, e) in enumerate(offsets) if min(e, end) - max(s, start) >= 1]
    vulnerable = batch.rollouts[0]
    penalised = torch.nonzero(vulnerable.rewards < 0).flatten().tolist()
    assert penalised == expected and len(expected) >= 3
    close(vulnerable.rewards[expected], [-1.0 / len(expected)] * len(expected))
    # implements run() (static check: it parses, defines it, non-trivial) but vulnerable:
    # the functional bonus and no clean bonus
    assert vulnerable.functional and vulnerable.rewards[-1] == config.functional_bonus
    assert {f.rule_id.split(":")[0] for f in vulnerable.breakdown.findings} >= {"B602"}

    safe = batch.rollouts[1]  # only low findings (import subprocess, B603): clean
    close(safe.rewards, [0.0] * (len(safe.rewards) - 1) + [3.5])

    refusal = batch.rollouts[2]
    assert refusal.status == "refusal" and refusal.rewards[-1] == config.invalid_penalty

    stats = batch.stats
    assert stats.vulnerable_fraction == pytest.approx(1 / 3)
    assert stats.findings_per_cwe == {"CWE-78": 1}
    assert (stats.invalid, stats.unscanned, stats.unlocated) == (1, 0, 0)
    assert stats.to_log()["reward/cwe/CWE-78"] == 1.0

    # The instance-level ablation: same totals, all on the last token (scans from the cache).
    instance = RolloutScorer(
        dataclasses.replace(config, granularity="instance"), scanners=["bandit"]
    )
    again = instance(rollouts)
    for token_level, instance_level in zip(batch.rewards, again.rewards, strict=True):
        torch.testing.assert_close(instance_level.sum(), token_level.sum())
        assert torch.count_nonzero(instance_level[:-1]) == 0
