"""Stage 5, assemble: dedup, decontaminate, split by commit or project, build the configs.

Why each step exists:

* **Exact and near-duplicate removal** and **decontamination** (:mod:`vul2safe.build.dedup`,
  whose docstring says why and how): a duplicate left in would leak between splits, and a
  model trained on PrimeVul+ must not have seen the prompts it is later scored on.
* **Group splits**: each commit (or project) lands in exactly one split, so the fixes of
  one commit never sit on both sides. Groups are visited in a seeded hash order and each
  goes to the split furthest below its target share: deterministic for a given set of
  groups and seed, and close to the ratios even for small builds.

:func:`build_dataset` turns the assembled pairs into one ``DatasetDict`` per config
(``pairs``, ``sft``, ``rl``, ``eval``); the schema is in ``docs/primevul-plus.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from vul2safe.build import BuildContext, StageResult

# dedup and decontamination live in vul2safe.build.dedup; re-exported for this stage's callers
from vul2safe.build.dedup import (
    build_index,
    check_benchmarks,
    code_tokens,
    decontaminate,
    deduplicate,
    normalize_code,
)
from vul2safe.build.records import RepairPair
from vul2safe.errors import UsageError, Vul2SafeError

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

__all__ = [
    "DEFAULT_BENCHMARKS",
    "EVAL_SPLIT",
    "SPLITS",
    "AssembleConfig",
    "assign_splits",
    "build_dataset",
    "build_index",
    "check_benchmarks",
    "code_tokens",
    "decontaminate",
    "deduplicate",
    "group_key",
    "normalize_code",
    "pair_row",
    "prompt_rows",
    "require_datasets",
    "run_stage",
    "split_targets",
]

SPLITS: tuple[str, ...] = ("train", "validation", "test")
EVAL_SPLIT = "eval"
DEFAULT_BENCHMARKS: tuple[str, ...] = (
    "humaneval-pro",
    "mbpp-pro",
    "cyberseceval-instruct",
    "cyberseceval-autocomplete",
)


@dataclass
class AssembleConfig:
    """Settings of the assemble stage (all recorded in the dataset card)."""

    near_dup_threshold: float = 0.9  # token-shingle Jaccard at/above which pairs are near dups
    shingle_size: int = 5  # tokens per shingle for near-duplicate detection
    num_perm: int = 128  # MinHash permutations (candidate search only; Jaccard confirms)
    ngram: int = 13  # word n-gram length for decontamination (GPT-3's choice)
    decontaminate_against: tuple[str, ...] = DEFAULT_BENCHMARKS
    benchmark_data_dir: str | None = None  # like --data-dir; else $VUL2SAFE_DATA_DIR, the Hub
    require_decontamination: bool = True  # a benchmark that cannot be loaded is an error
    template_fraction: float = 0.02  # n-grams in more of a benchmark's tasks are template
    split_ratios: dict[str, float] = field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1}
    )
    eval_fraction: float = 0.0  # > 0: a separate held-out "eval" group split; else eval = test
    group_by: Literal["commit", "project"] = "commit"
    seed: int = 0


def _config(ctx: BuildContext | None) -> AssembleConfig:
    config = getattr(getattr(ctx, "config", None), "assemble", None)
    return config if isinstance(config, AssembleConfig) else AssembleConfig()


# ----------------------------------------------------------------------------- splits

_HEX = re.compile(r"\b[0-9a-f]{7,40}\b")
_GITHUB = re.compile(r"(?:github\.com|gitlab\.com)/([^/\s]+/[^/\s#?]+)", re.IGNORECASE)


def group_key(pair: RepairPair, group_by: str = "commit") -> str:
    """The commit (a hex id, whichever field it came in) or the project of a pair."""
    url = pair.commit_url or ""
    if group_by == "project":
        if pair.project:
            return pair.project.strip().lower()
        match = _GITHUB.search(url)
        if match:
            return match.group(1).lower().removesuffix(".git")
    for text in (pair.commit, url):
        found = _HEX.findall((text or "").lower())
        if found:
            return str(found[-1])
    return (pair.commit or url or pair.pair_id).strip().lower()


def _order_key(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def split_targets(config: AssembleConfig) -> dict[str, float]:
    """Split → share of the pairs; ``eval`` takes ``eval_fraction`` off the top."""
    ratios = {k: float(v) for k, v in config.split_ratios.items() if float(v) > 0}
    if not ratios:
        raise UsageError("assemble.split_ratios needs at least one positive ratio")
    unknown = sorted(set(ratios) - set(SPLITS))
    if unknown:
        raise UsageError(
            f"assemble.split_ratios: unknown split(s) {', '.join(unknown)}; use {', '.join(SPLITS)}"
        )
    if not 0.0 <= config.eval_fraction < 1.0:
        raise UsageError("assemble.eval_fraction must be in [0, 1)")
    total = sum(ratios.values())
    rest = 1.0 - config.eval_fraction
    targets = {k: rest * v / total for k, v in ratios.items()}
    if config.eval_fraction > 0:
        targets[EVAL_SPLIT] = config.eval_fraction
    return targets


def assign_splits(pairs: Sequence[RepairPair], config: AssembleConfig) -> list[RepairPair]:
    """Copies of ``pairs`` with ``split`` set; every group (commit/project) in one split."""
    if config.group_by not in ("commit", "project"):
        raise UsageError(f"assemble.group_by must be commit or project, not {config.group_by!r}")
    targets = split_targets(config)
    groups: dict[str, list[int]] = {}
    for i, pair in enumerate(pairs):
        groups.setdefault(group_key(pair, config.group_by), []).append(i)
    filled = dict.fromkeys(targets, 0)
    total = len(pairs)
    split_of: dict[int, str] = {}
    for key in sorted(groups, key=lambda k: _order_key(config.seed, k)):
        members = groups[key]
        # the split furthest below its target (ties: the order of split_targets)
        name = max(targets, key=lambda s: targets[s] * total - filled[s])
        filled[name] += len(members)
        for i in members:
            split_of[i] = name
    return [replace(pair, split=split_of[i]) for i, pair in enumerate(pairs)]


# ----------------------------------------------------------------------------- the stage


def run_stage(pairs: list[RepairPair], ctx: BuildContext) -> StageResult:
    """Dedup → decontaminate → group splits; every dropped pair says why."""
    config = _config(ctx)
    progress = ctx.progress if ctx is not None else None
    total = len(pairs)
    if progress:
        progress("assemble", 0, total)
    kept, dup_dropped = deduplicate(
        pairs, config.near_dup_threshold, config.shingle_size, config.num_perm
    )
    index = build_index(
        config.decontaminate_against,
        config.ngram,
        config.benchmark_data_dir,
        template_fraction=config.template_fraction,
        required=config.require_decontamination,
    )
    kept, contaminated = decontaminate(kept, index)
    kept = assign_splits(kept, config)
    if progress:
        progress("assemble", total, total)
    reasons = Counter(str(p.drop_reason) for p in [*dup_dropped, *contaminated])
    stats = {
        "exact_duplicates": reasons.get("duplicate", 0),
        "near_duplicates": reasons.get("near-duplicate", 0),
        "contaminated": {
            r.split(":", 1)[1]: n for r, n in sorted(reasons.items()) if r.startswith("contam")
        },
        "benchmarks": index.benchmarks,
        "ngram": config.ngram,
        "splits": dict(Counter(p.split for p in kept)),
        "groups": len({group_key(p, config.group_by) for p in kept}),
        "group_by": config.group_by,
    }
    return StageResult(kept=kept, dropped=[*dup_dropped, *contaminated], stats=stats)


# ----------------------------------------------------------------------------- datasets


def require_datasets() -> None:
    """One clear line instead of an ImportError deep inside the build."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        raise Vul2SafeError(
            "building the PrimeVul+ DatasetDicts needs the `datasets` package (with pyarrow): "
            "pip install datasets"
        ) from None


def _features() -> dict[str, Features]:
    from datasets import Features, List, Value

    text = Value("string")
    spans = List(List(Value("int64")))
    common = {"language": text, "cwe": List(text), "source": text, "project": text}
    return {
        "pairs": Features(
            {
                "pair_id": text,
                "source": text,
                "language": text,
                "cwe": List(text),
                "cve": text,
                "project": text,
                "commit": text,
                "commit_url": text,
                "commit_message": text,
                "file_name": text,
                "func_name": text,
                "date": text,
                "vulnerable": text,
                "fixed": text,
                "diff": text,
                "verdict": Value("bool"),
                "confidence": Value("float64"),
                "vulnerable_spans": spans,
                "secure_spans": spans,
                "prompts": List({"style": text, "text": text, "source": text}),
                "reflection": text,  # JSON
                "evidence": text,  # JSON
                "spans": text,  # JSON
                "metadata": text,  # JSON
            }
        ),
        "sft": Features(
            {
                "id": text,
                "pair_id": text,
                "prompt": text,
                "completion": text,
                "prompt_style": text,
                **common,
                "commit": text,
            }
        ),
        "rl": Features(
            {
                "id": text,
                "pair_id": text,
                "prompt": text,
                "prompt_style": text,
                "reference": text,
                "vulnerable": text,
                "vulnerable_spans": spans,
                "secure_spans": spans,
                **common,
                "commit": text,
            }
        ),
        "eval": Features(
            {
                "id": text,
                "prompt": text,
                "language": text,
                "cwe": List(text),
                "prompt_style": text,
                "project": text,
                "commit": text,
                "reference": text,
            }
        ),
    }


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, sort_keys=True)


def _span_list(spans: dict[str, Any] | None, key: str) -> list[list[int]]:
    """``[[start, end], ...]`` character offsets, whatever shape the localize stage stored."""
    out: list[list[int]] = []
    for span in (spans or {}).get(key) or []:
        if isinstance(span, dict):
            span = [span.get("start"), span.get("end")]
        if isinstance(span, list | tuple) and len(span) >= 2:
            out.append([int(span[0]), int(span[1])])
    return out


def _verdict(reflection: dict[str, Any] | None) -> tuple[bool | None, float | None]:
    """The reflect stage's voted verdict ("the fix is correct") and its confidence."""
    if not reflection:
        return None, None
    verdict = reflection.get("verdict")
    confidence = reflection.get("confidence")
    return (
        verdict if isinstance(verdict, bool) else None,
        float(confidence) if isinstance(confidence, int | float) else None,
    )


def _prompts(pair: RepairPair) -> list[dict[str, Any]]:
    """The usable prompts of a pair (non-empty text), in stage order."""
    return [p for p in pair.prompts or [] if isinstance(p, dict) and str(p.get("text") or "")]


def pair_row(pair: RepairPair) -> dict[str, Any]:
    """One ``pairs`` row: every field; open-ended nested dicts as JSON strings."""
    verdict, confidence = _verdict(pair.reflection)
    return {
        "pair_id": pair.pair_id,
        "source": pair.source,
        "language": pair.language,
        "cwe": list(pair.cwe),
        "cve": pair.cve,
        "project": pair.project,
        "commit": pair.commit,
        "commit_url": pair.commit_url,
        "commit_message": pair.commit_message,
        "file_name": pair.file_name,
        "func_name": pair.func_name,
        "date": pair.date,
        "vulnerable": pair.vulnerable,
        "fixed": pair.fixed,
        "diff": pair.diff,
        "verdict": verdict,
        "confidence": confidence,
        "vulnerable_spans": _span_list(pair.spans, "vulnerable_spans"),
        "secure_spans": _span_list(pair.spans, "secure_spans"),
        "prompts": [
            {
                "style": str(p.get("style") or ""),
                "text": str(p["text"]),
                "source": p.get("source"),
            }
            for p in _prompts(pair)
        ],
        "reflection": _json(pair.reflection),
        "evidence": _json(pair.evidence),
        "spans": _json(pair.spans),
        "metadata": _json(pair.metadata),
    }


def prompt_rows(pair: RepairPair) -> list[dict[str, Any]]:
    """One row per prompt with everything sft/rl/eval take from it (they pick columns).

    ``id`` = 12 hex digits of SHA-256(pair_id) + ``-<prompt index>``: short (it becomes the
    eval task id ``primevul-plus/<id>``), stable, and the same in sft, rl and eval."""
    rows = []
    stem = hashlib.sha256(pair.pair_id.encode()).hexdigest()[:12]
    for i, prompt in enumerate(_prompts(pair)):
        rows.append(
            {
                "id": f"{stem}-{i}",
                "pair_id": pair.pair_id,
                "prompt": str(prompt["text"]),
                "prompt_style": prompt.get("style"),
                "completion": pair.fixed,
                "reference": pair.fixed,
                "vulnerable": pair.vulnerable,
                "vulnerable_spans": _span_list(pair.spans, "vulnerable_spans"),
                "secure_spans": _span_list(pair.spans, "secure_spans"),
                "language": pair.language,
                "cwe": list(pair.cwe),
                "source": pair.source,
                "project": pair.project,
                "commit": pair.commit,
            }
        )
    return rows


def build_dataset(
    pairs: Sequence[RepairPair], config: AssembleConfig | None = None
) -> dict[str, DatasetDict]:
    """Config name → ``DatasetDict`` of its splits (an empty split is left out: ``datasets``
    cannot save and reload one). Pairs without a ``split`` are assigned one first."""
    require_datasets()
    from datasets import Dataset, DatasetDict

    config = config or AssembleConfig()
    if any(p.split is None for p in pairs):
        pairs = assign_splits(pairs, config)
    features = _features()
    by_split: dict[str, list[RepairPair]] = {}
    for pair in pairs:
        by_split.setdefault(str(pair.split), []).append(pair)
    eval_from = EVAL_SPLIT if EVAL_SPLIT in by_split else "test"
    order = [*SPLITS, EVAL_SPLIT]
    names = sorted(by_split, key=lambda s: (order.index(s) if s in order else len(order), s))

    def table(name: str, rows: list[dict[str, Any]]) -> Dataset:
        feats = features[name]
        return Dataset.from_dict({c: [r.get(c) for r in rows] for c in feats}, features=feats)

    result: dict[str, DatasetDict] = {}
    result["pairs"] = DatasetDict(
        {s: table("pairs", [pair_row(p) for p in by_split[s]]) for s in names}
    )
    for config_name in ("sft", "rl"):
        splits = {}
        for s in names:
            if s == EVAL_SPLIT:
                continue  # held-out pairs never reach training configs
            rows = [row for p in by_split[s] for row in prompt_rows(p)]
            if rows:
                splits[s] = table(config_name, rows)
        result[config_name] = DatasetDict(splits)
    eval_rows = [row for p in by_split.get(eval_from, []) for row in prompt_rows(p)]
    result["eval"] = DatasetDict({"test": table("eval", eval_rows)} if eval_rows else {})
    return result
