"""Duplicate removal and decontamination for the assemble stage (:mod:`vul2safe.build.assemble`).

* **Exact and near-duplicate removal** (:func:`deduplicate`) on *normalised* code (comments
  and whitespace stripped, :func:`normalize_code`): the same fix reaches us through several
  sources (SVEN's C pairs are also in the PrimeVul-format file) and the same function is
  often fixed twice. A duplicate left in would leak between splits. Exact duplicates share
  the normalised (vulnerable, fixed) text; near duplicates have a token-shingle Jaccard
  similarity of at least ``near_dup_threshold`` on "vulnerable ⟂ fixed". Candidates come
  from MinHash + LSH (:class:`vul2safe.build.similarity.MinHashLSH`, shared with the prompts
  stage; the cost stays linear), and every candidate is confirmed with the exact Jaccard, so
  the threshold means what it says. The first pair in input order wins
  (sources keep the order they were given on the command line).
* **Decontamination** (:func:`build_index`, :func:`decontaminate`): a pair whose prompts or
  code share a word ``ngram``-gram (13 by default, the GPT-3 convention; case-folded ``\\w+``
  tokens, so punctuation and layout do not matter) with an evaluation benchmark's prompt or
  reference solution is dropped, with the benchmark and task recorded. A model trained on
  PrimeVul+ must not have seen the prompts it is later scored on. N-grams found in many of
  one benchmark's tasks are that benchmark's *template* text (HumanEval Pro's fixed
  instruction), not content, and are ignored (``template_fraction``).
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tokenize
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from vul2safe.build.records import RepairPair
from vul2safe.build.similarity import MinHashLSH, hashed_shingles
from vul2safe.errors import UsageError, Vul2SafeError


class DecontaminationSettings(Protocol):
    """What :func:`check_benchmarks` reads (``AssembleConfig`` has it; typed structurally so
    this module does not import the stage that imports it)."""

    @property
    def require_decontamination(self) -> bool: ...
    @property
    def decontaminate_against(self) -> Sequence[str]: ...
    @property
    def benchmark_data_dir(self) -> str | None: ...


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


def deduplicate(
    pairs: Sequence[RepairPair], threshold: float = 0.9, shingle_size: int = 5, num_perm: int = 128
) -> tuple[list[RepairPair], list[RepairPair]]:
    """(kept, dropped): exact then near duplicates removed, the first occurrence kept.

    Dropped pairs get ``drop_reason`` ``duplicate`` or ``near-duplicate`` and
    ``metadata["duplicate_of"]`` (and ``"jaccard"`` for near duplicates).
    """
    index = MinHashLSH(threshold, num_perm=num_perm, seed=0)
    exact: dict[str, str] = {}
    kept: list[RepairPair] = []
    dropped: list[RepairPair] = []
    for pair in pairs:
        before = code_tokens(pair.vulnerable, pair.language)
        after = code_tokens(pair.fixed, pair.language)
        key = hashlib.sha256(("\x00".join([" ".join(before), " ".join(after)])).encode()).digest()
        first = exact.get(key.hex())
        if first is not None:
            dropped.append(_dropped(pair, "duplicate", duplicate_of=first))
            continue
        match = index.find_or_add(hashed_shingles([*before, "\x00SEP\x00", *after], shingle_size))
        if match is not None:
            extra = {"duplicate_of": kept[match[0]].pair_id, "jaccard": round(match[1], 4)}
            dropped.append(_dropped(pair, "near-duplicate", **extra))
            continue
        exact[key.hex()] = pair.pair_id
        kept.append(pair)
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


def check_benchmarks(config: DecontaminationSettings) -> None:
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
