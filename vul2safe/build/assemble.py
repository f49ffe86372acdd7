"""Stage 5, assemble: dedup, decontaminate, split by commit or project, build the configs.

Why each step exists:

* **Exact and near-duplicate removal** on *normalised* code (comments and whitespace
  stripped, :func:`normalize_code`): the same fix reaches us through several sources (SVEN's
  C pairs are also in the PrimeVul-format file) and the same function is often fixed twice.
  A duplicate left in would leak between splits. Exact duplicates share the normalised
  (vulnerable, fixed) text; near duplicates have a token-shingle Jaccard similarity of at
  least ``near_dup_threshold`` on "vulnerable ⟂ fixed". Candidates come from MinHash + LSH
  (so the cost stays linear), and every candidate is confirmed with the exact Jaccard, so
  the threshold means what it says. The first pair in input order wins (sources keep the
  order they were given on the command line).
* **Decontamination**: a pair whose prompts or code share a word ``ngram``-gram (13 by
  default, the GPT-3 convention; case-folded ``\\w+`` tokens, so punctuation and layout do
  not matter) with an evaluation benchmark's prompt or reference solution is dropped,
  with the benchmark and task recorded. A model trained on PrimeVul+ must not have seen
  the prompts it is later scored on. N-grams found in many of one benchmark's tasks are
  that benchmark's *template* text (HumanEval Pro's fixed instruction), not content, and
  are ignored (``template_fraction``).
* **Group splits**: each commit (or project) lands in exactly one split, so the fixes of
  one commit never sit on both sides. Groups are visited in a seeded hash order and each
  goes to the split furthest below its target share: deterministic for a given set of
  groups and seed, and close to the ratios even for small builds.

:func:`build_dataset` turns the assembled pairs into one ``DatasetDict`` per config
(``pairs``, ``sft``, ``rl``, ``eval``); the schema is in ``docs/primevul-plus.md``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tokenize
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.records import RepairPair
from vul2safe.errors import UsageError, Vul2SafeError

if TYPE_CHECKING:
    from datasets import DatasetDict, Features

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


# ----------------------------------------------------------------------------- normalising

#: string literals stay whole (their spaces matter), then words, then single symbols
_TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|\w+|[^\w\s]')
_WORD = re.compile(r"\w+")
_HASH_COMMENT_LANGUAGES = frozenset({"python", "ruby", "shell", "bash", "perl"})


def _strip_python(code: str) -> str | None:
    """Comments removed with Python's own tokenizer; ``None`` when the code does not lex."""
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(code).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return None
    return " ".join(
        tok.string
        for tok in tokens
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)
        and tok.type not in (tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    )


def _strip_comments(code: str, hash_comments: bool) -> str:
    """Drop ``//`` and ``/* */`` (or ``#``) comments, leaving string literals intact."""
    out: list[str] = []
    i, n = 0, len(code)
    quote: str | None = None
    while i < n:
        ch = code[i]
        if quote is not None:
            out.append(ch)
            if ch == "\\" and i + 1 < n:
                out.append(code[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = None
            i += 1
        elif ch in "\"'`":
            quote = ch
            out.append(ch)
            i += 1
        elif (hash_comments and ch == "#") or (not hash_comments and code.startswith("//", i)):
            end = code.find("\n", i)
            i = n if end < 0 else end
        elif not hash_comments and code.startswith("/*", i):
            end = code.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def code_tokens(code: str, language: str = "") -> list[str]:
    """Tokens of ``code`` without comments or whitespace: what "the same code" means here."""
    stripped = _strip_python(code) if language == "python" else None
    if stripped is None:
        stripped = _strip_comments(code, hash_comments=language in _HASH_COMMENT_LANGUAGES)
    return _TOKEN.findall(stripped)


def normalize_code(code: str, language: str = "") -> str:
    """One space between tokens, comments gone: equal strings mean equal code."""
    return " ".join(code_tokens(code, language))


# ----------------------------------------------------------------------------- dedup

_MERSENNE = np.uint64((1 << 61) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)


def _hash32(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big")


def _shingles(tokens: Sequence[str], size: int) -> set[int]:
    if len(tokens) <= size:
        return {_hash32(" ".join(tokens))}
    return {_hash32(" ".join(tokens[i : i + size])) for i in range(len(tokens) - size + 1)}


class _MinHasher:
    """MinHash signatures with ``(a*x + b) mod (2^61 - 1)`` permutations of 32-bit hashes."""

    def __init__(self, num_perm: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)

    def signature(self, shingles: set[int]) -> np.ndarray:
        values = np.fromiter(shingles, dtype=np.uint64, count=len(shingles))
        # a < 2^32 and x < 2^32, so a*x + b < 2^64: no uint64 overflow before the modulus
        permuted = (np.outer(self.a, values) + self.b[:, None]) % _MERSENNE & _MASK32
        return permuted.min(axis=1)


def _bands(num_perm: int) -> tuple[int, int]:
    """(bands, rows): rows=8 puts the LSH threshold near 0.7, well below any sane cut-off."""
    rows = 8 if num_perm >= 16 else max(1, num_perm // 2)
    return num_perm // rows, rows


def deduplicate(
    pairs: Sequence[RepairPair], threshold: float = 0.9, shingle_size: int = 5, num_perm: int = 128
) -> tuple[list[RepairPair], list[RepairPair]]:
    """(kept, dropped): exact then near duplicates removed, the first occurrence kept.

    Dropped pairs get ``drop_reason`` ``duplicate`` or ``near-duplicate`` and
    ``metadata["duplicate_of"]`` (and ``"jaccard"`` for near duplicates).
    """
    hasher = _MinHasher(num_perm, seed=0)
    bands, rows = _bands(num_perm)
    exact: dict[str, str] = {}
    buckets: dict[tuple[int, bytes], list[int]] = {}
    kept: list[RepairPair] = []
    kept_shingles: list[set[int]] = []
    dropped: list[RepairPair] = []
    for pair in pairs:
        before = code_tokens(pair.vulnerable, pair.language)
        after = code_tokens(pair.fixed, pair.language)
        key = hashlib.sha256(("\x00".join([" ".join(before), " ".join(after)])).encode()).digest()
        first = exact.get(key.hex())
        if first is not None:
            dropped.append(_dropped(pair, "duplicate", duplicate_of=first))
            continue
        shingles = _shingles([*before, "\x00SEP\x00", *after], shingle_size)
        signature = hasher.signature(shingles)
        band_keys = [(b, signature[b * rows : (b + 1) * rows].tobytes()) for b in range(bands)]
        candidates = sorted({i for bk in band_keys for i in buckets.get(bk, ())})
        best, best_j = None, 0.0
        for index in candidates:
            other = kept_shingles[index]
            jaccard = len(shingles & other) / len(shingles | other)
            if jaccard > best_j:
                best, best_j = index, jaccard
        if best is not None and best_j >= threshold:
            extra = {"duplicate_of": kept[best].pair_id, "jaccard": round(best_j, 4)}
            dropped.append(_dropped(pair, "near-duplicate", **extra))
            continue
        exact[key.hex()] = pair.pair_id
        for bk in band_keys:
            buckets.setdefault(bk, []).append(len(kept))
        kept.append(pair)
        kept_shingles.append(shingles)
    return kept, dropped


def _dropped(pair: RepairPair, reason: str, **details: Any) -> RepairPair:
    return replace(pair, drop_reason=reason, metadata={**pair.metadata, **details})


# ----------------------------------------------------------------------------- decontamination


def _ngram_hashes(text: str, n: int) -> np.ndarray:
    """64-bit hashes of the case-folded word n-grams of ``text`` (a rolling polynomial hash)."""
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return np.empty(0, dtype=np.uint64)
    token = np.array(
        [int.from_bytes(hashlib.blake2b(w.encode(), digest_size=8).digest(), "big") for w in words],
        dtype=np.uint64,
    )
    count = len(words) - n + 1
    acc = np.zeros(count, dtype=np.uint64)
    base = np.uint64(1099511628211)  # FNV prime; uint64 arithmetic wraps modulo 2^64
    with np.errstate(over="ignore"):
        for j in range(n):
            acc = acc * base + token[j : j + count]
    return acc


@dataclass
class BenchmarkIndex:
    """Sorted n-gram hashes of benchmark texts, each with the (benchmark, task) it came from."""

    ngram: int
    hashes: np.ndarray  # sorted, unique
    owners: np.ndarray  # index into ``tasks`` for each hash (its first task)
    tasks: list[tuple[str, str]]
    benchmarks: dict[str, dict[str, Any]]  # name → tasks, dataset hash, source, template n-grams

    def lookup(self, text: str) -> tuple[int, tuple[str, str] | None]:
        """(number of distinct shared n-grams, the first task sharing one)."""
        query = np.unique(_ngram_hashes(text, self.ngram))
        if not query.size or not self.hashes.size:
            return 0, None
        positions = np.searchsorted(self.hashes, query)
        positions[positions >= self.hashes.size] = 0
        hits = positions[self.hashes[positions] == query]
        if not hits.size:
            return 0, None
        return int(hits.size), self.tasks[int(self.owners[hits].min())]


def benchmark_texts(task: Any) -> list[str]:
    """What of a task must not appear in training data: prompt, reference, original code."""
    texts = [task.prompt]
    if getattr(task, "reference", None):
        texts.append(task.reference)
    origin = (getattr(task, "metadata", None) or {}).get("origin_code")
    if isinstance(origin, str) and origin:
        texts.append(origin)
    return texts


def build_index(
    names: Iterable[str],
    ngram: int = 13,
    data_dir: str | None = None,
    *,
    template_fraction: float = 0.02,
    required: bool = True,
) -> BenchmarkIndex:
    """Load each benchmark through the plugin registry and index its texts' n-grams."""
    from vul2safe import plugins
    from vul2safe.benchmark import dataset_hash

    tasks: list[tuple[str, str]] = []
    all_hashes: list[np.ndarray] = []
    all_owners: list[np.ndarray] = []
    described: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            bench = plugins.benchmarks.get(name)
            loaded = bench.load(data_dir)
            source = bench.source(data_dir)
        except Vul2SafeError as exc:
            if required:
                raise UsageError(
                    f"decontamination against {name} failed: {exc} (set "
                    "assemble.benchmark_data_dir, or remove it from "
                    "assemble.decontaminate_against)"
                ) from None
            described[name] = {"skipped": str(exc)}
            continue
        per_task = [
            np.unique(np.concatenate([_ngram_hashes(t, ngram) for t in benchmark_texts(task)]))
            for task in loaded
        ]
        counts = Counter(int(h) for arr in per_task for h in arr.tolist())
        limit = max(10, int(template_fraction * len(loaded)))
        template = np.array(sorted(h for h, c in counts.items() if c > limit), dtype=np.uint64)
        for task, arr in zip(loaded, per_task, strict=True):
            arr = arr[~np.isin(arr, template)] if template.size else arr
            all_hashes.append(arr)
            all_owners.append(np.full(arr.size, len(tasks), dtype=np.int64))
            tasks.append((name, task.task_id))
        described[name] = {
            "tasks": len(loaded),
            "dataset_hash": dataset_hash(loaded),
            "source": source,
            "template_ngrams": int(template.size),
        }
    if all_hashes:
        hashes = np.concatenate(all_hashes)
        owners = np.concatenate(all_owners)
        order = np.lexsort((owners, hashes))
        hashes, owners = hashes[order], owners[order]
        hashes, first = np.unique(hashes, return_index=True)
        owners = owners[first]
    else:
        hashes, owners = np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    return BenchmarkIndex(ngram, hashes, owners, tasks, described)


def check_benchmarks(config: AssembleConfig) -> None:
    """Fail before the teacher stages run when decontamination data cannot be had:
    an unknown benchmark, a missing local path, or only the Hub while it is offline."""
    if not config.require_decontamination:
        return
    from vul2safe import plugins

    offline = any(
        os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    fix = (
        "set assemble.benchmark_data_dir (or VUL2SAFE_DATA_DIR) to the benchmarks' data, "
        "or remove it from assemble.decontaminate_against"
    )
    for name in config.decontaminate_against:
        try:
            where = str(plugins.benchmarks.get(name).source(config.benchmark_data_dir))
        except Vul2SafeError as exc:
            raise UsageError(f"decontamination against {name}: {exc}") from None
        if where.startswith("hub:") and offline:
            raise UsageError(
                f"decontamination against {name} needs its data, but no local copy was "
                f"given and the Hub is offline; {fix}"
            )


def pair_texts(pair: RepairPair) -> list[tuple[str, str]]:
    """(field, text) of a pair that a model trains on or is scored against."""
    texts = [
        (f"prompt:{p.get('style') or i}", str(p.get("text") or ""))
        for i, p in enumerate(pair.prompts or [])
    ]
    return [*texts, ("fixed", pair.fixed), ("vulnerable", pair.vulnerable)]


def decontaminate(
    pairs: Sequence[RepairPair], index: BenchmarkIndex
) -> tuple[list[RepairPair], list[RepairPair]]:
    """(kept, dropped): drop pairs sharing an n-gram with a benchmark; say which and where."""
    kept: list[RepairPair] = []
    dropped: list[RepairPair] = []
    for pair in pairs:
        for name, text in pair_texts(pair):
            shared, owner = index.lookup(text)
            if owner is not None:
                bench, task_id = owner
                details: dict[str, Any] = {"benchmark": bench, "task_id": task_id}
                details.update(field=name, shared_ngrams=shared)
                dropped.append(_dropped(pair, f"contaminated:{bench}", decontamination=details))
                break
        else:
            kept.append(pair)
    return kept, dropped


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
