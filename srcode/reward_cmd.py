"""``srcode reward``: score samples with the training reward and show it per token.

A user debugging a reward wants to see which tokens it pays and charges. Input: JSONL
lines ``{id, prompt, response, language, reference?, secure_spans?, tests?, finish_reason?}``
(``reference`` is the fix; its ``secure_spans`` -- ``[[start, end], ...]`` into it, as in
srcode's rl rows -- are the secure snippets; without spans every non-blank reference line
is one; ``tests`` is Python test code run in the sandbox after the answer;
``finish_reason`` is the generator's, ``"length"`` marking a truncated output). Output: JSONL
``{id, reward, terms, tokens, ...}`` (``tokens``: ``[[text, reward], ...]``, rewards summing
to ``reward``) or, with ``--format html``, one self-contained page with a heat map.

Tokens: a Hugging Face tokenizer when one is given (``--tokenizer``, or the config's
``model.path`` when it is a local directory), else a plain regex split (identifiers,
numbers, single punctuation marks, blank runs) -- enough to see where a reward lands
without a model.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from vul2safe.errors import InputError, UsageError

__all__ = ["read_reward_samples", "regex_offsets", "run_reward", "score_reward_samples"]

_TOKEN = re.compile(r"[A-Za-z_]\w*|\d+|\s+|.", re.DOTALL)
_FIELDS = {
    "id",
    "prompt",
    "response",
    "language",
    "reference",
    "secure_spans",
    "tests",
    "finish_reason",
}


def regex_offsets(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` of each regex token of ``text``; they tile it exactly."""
    return [m.span() for m in _TOKEN.finditer(text)]


def read_reward_samples(path: Path) -> list[dict[str, Any]]:
    """Validated sample lines; a bad line raises :class:`InputError` naming it and the fix."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read samples file {path}: {exc}") from None
    samples = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
        for key in ("id", "prompt", "response", "language"):
            if key not in row:
                raise InputError(
                    f"{where}: missing field {key!r} (need id, prompt, response, language)"
                )
        for key in ("prompt", "response", "language"):
            if not isinstance(row[key], str):
                raise InputError(f"{where}: {key!r} must be a string")
        for key in ("reference", "tests", "finish_reason"):
            if row.get(key) is not None and not isinstance(row[key], str):
                raise InputError(f"{where}: {key!r} must be a string")
        unknown = sorted(set(row) - _FIELDS)
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(_FIELDS))}"
            )
        samples.append(row)
    if not samples:
        raise InputError(
            f"{path}: no samples (expected JSONL lines of {{id, prompt, response, language}})"
        )
    return samples


def _snippets(row: dict[str, Any]) -> tuple[str, ...]:
    from srcode.rewards import secure_snippets

    if row.get("secure_spans"):
        return secure_snippets(row)
    reference = row.get("reference") or ""
    return tuple(line.strip() for line in reference.splitlines() if line.strip())


def _load_config(path: Path | None) -> tuple[dict[str, Any], str | None]:
    """The ``reward:`` mapping and ``model.path`` of a srcode YAML config (or a bare
    ``reward:`` file); read directly so scoring needs no model or data section, but with
    the loader ``srcode ppo`` reads the same file with (``1e-4`` is a number)."""
    if path is None:
        return {}, None
    import yaml

    from srcode.config import load_yaml

    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise UsageError(f"cannot read config {path}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("reward", {}) or {}, dict):
        raise UsageError(f"{path}: expected a mapping with a 'reward:' section")
    model = raw.get("model") or {}
    return dict(raw.get("reward") or {}), model.get("path") if isinstance(model, dict) else None


def _tokenizer(name: str | None) -> Any:
    if name is None:
        return None
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load tokenizer {name!r}: {str(exc).splitlines()[0]}") from None


def score_reward_samples(
    rows: list[dict[str, Any]], options: dict[str, Any], tokenizer: Any = None
) -> list[dict[str, Any]]:
    """Score ``rows`` with the reward ``options`` (a ``reward:`` mapping): one record each."""
    from srcode.rewards import Rollout, ScannerReward

    scorer = ScannerReward(options).scorer
    rollouts = []
    for row in rows:
        if tokenizer is not None:
            encoded = tokenizer(
                row["response"], add_special_tokens=False, return_offsets_mapping=True
            )
            offsets = [tuple(o) for o in encoded["offset_mapping"]]
        else:
            offsets = regex_offsets(row["response"])
        rollouts.append(
            Rollout(
                prompt=row["prompt"],
                response=row["response"],
                offsets=offsets,
                language=row["language"],
                secure_snippets=_snippets(row),
                tests=row.get("tests") or None,
                finish_reason=row.get("finish_reason"),
            )
        )
    batch = scorer(rollouts)
    records = []
    for row, rollout, scored in zip(rows, rollouts, batch.rollouts, strict=True):
        rewards = [round(float(r), 6) for r in scored.rewards]
        terms = scored.breakdown.terms()
        # An empty response has no token to carry its terms; its reward is still theirs
        # (invalid: -3), never a free 0 above every vulnerable answer.
        total = float(scored.rewards.sum()) if rewards else sum(terms.values())
        records.append(
            {
                "id": row["id"],
                "reward": round(total, 6),
                "terms": {k: round(v, 6) for k, v in terms.items()},
                "tokens": [
                    [rollout.response[s:e], r]
                    for (s, e), r in zip(rollout.offsets, rewards, strict=True)
                ],
                "status": scored.status,
                "functional": scored.functional,
                "functional_detail": scored.functional_detail,
                "scanned": scored.scanned,
                "blocks": [
                    {
                        "language": s.language,
                        "offset": s.offset,
                        "answer": s.primary,
                        "scanned": s.scanned,
                    }
                    for s in scored.segments
                ],
                "findings": [
                    {
                        "scanner": f.scanner,
                        "rule": f.rule_id,
                        "severity": str(
                            f.severity.value if hasattr(f.severity, "value") else f.severity
                        ),
                        "line": f.start_line,
                        "cwe": list(f.cwe),
                    }
                    for f in scored.breakdown.findings
                ],
            }
        )
    return records


def run_reward(
    samples: Path,
    *,
    config: Path | None = None,
    output_format: Literal["jsonl", "html"] = "jsonl",
    output: Path | None = None,
    tokenizer: str | None = None,
) -> str:
    """Score ``samples`` and render them; writes ``output`` (atomically) or returns the text."""
    from vul2safe.fileio import write_text_atomic

    if output_format not in ("jsonl", "html"):
        raise UsageError(f"--format must be 'jsonl' or 'html', got {output_format!r}")
    options, model_path = _load_config(config)
    if tokenizer is None and model_path and Path(model_path).is_dir():
        tokenizer = model_path
    records = score_reward_samples(read_reward_samples(samples), options, _tokenizer(tokenizer))
    if output_format == "html":
        from srcode.reward_html import render_html

        text = render_html(records, title=f"srcode reward: {samples.name}")
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if output is not None:
        write_text_atomic(output, text)
    return text
