"""Set similarity for the build: shingles, exact Jaccard, and the one MinHash + LSH index.

Two stages look for near-duplicates among many texts: assemble (pairs across sources,
:func:`vul2safe.build.dedup.deduplicate`) and prompts (prompts across pairs,
``global_dedup``). Both use :class:`MinHashLSH` here: MinHash signatures banded into LSH
buckets propose candidates in linear time, and every candidate is confirmed with the exact
Jaccard, so a threshold means what it says and the signatures only decide what is compared.

Hand-written (about forty lines of numpy) rather than ``datasketch``: its LSH imports
``scipy`` (some 40 MB) only to choose the band layout by numerical integration, which we fix
explicitly; and these signatures are bit-for-bit the ones the assemble stage has always
computed, so which pairs are compared does not change.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_MERSENNE = np.uint64((1 << 61) - 1)
_MASK32 = np.uint64(0xFFFFFFFF)

__all__ = [
    "MinHashLSH",
    "hash32",
    "hashed_shingles",
    "jaccard",
    "near_duplicates",
    "shingles",
]


def hash32(text: str) -> int:
    """A stable 32-bit hash (BLAKE2b): the same across runs and Python processes."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=4).digest(), "big")


def hashed_shingles(tokens: Sequence[str], size: int) -> set[int]:
    """32-bit hashes of the ``size``-token shingles (the whole sequence when shorter)."""
    if len(tokens) <= size:
        return {hash32(" ".join(tokens))}
    return {hash32(" ".join(tokens[i : i + size])) for i in range(len(tokens) - size + 1)}


def shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    """Word n-grams of the lower-cased text (the whole word tuple when shorter than n)."""
    words = re.findall(r"\w+", text.lower())
    if len(words) < n:
        return {tuple(words)} if words else set()
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[Any], b: set[Any]) -> float:
    """``|a ∩ b| / |a ∪ b|``; two empty sets are identical (1.0)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def near_duplicates(texts: Sequence[str], *, n: int = 3, threshold: float = 0.8) -> set[int]:
    """Indices of texts whose n-gram Jaccard with an *earlier kept* text reaches threshold
    (all pairs compared: for the handful of prompts of one pair)."""
    kept: list[set[tuple[str, ...]]] = []
    dropped: set[int] = set()
    for index, text in enumerate(texts):
        grams = shingles(text, n)
        if any(jaccard(grams, other) >= threshold for other in kept):
            dropped.add(index)
        else:
            kept.append(grams)
    return dropped


class MinHashLSH:
    """Near-duplicate search over sets of 32-bit shingle hashes, first come first kept.

    Signatures use ``num_perm`` permutations ``(a*x + b) mod (2^61 - 1)`` (seeded, so they do
    not change between runs); they are cut into bands of ``rows`` values, and sets sharing a
    band are candidates. With ``rows=8`` (the default from 16 permutations on) the LSH
    threshold sits near 0.7, well below any cut-off used here, so true matches are not missed.
    """

    def __init__(
        self, threshold: float, *, num_perm: int = 128, rows: int | None = None, seed: int = 0
    ) -> None:
        if rows is None:
            rows = 8 if num_perm >= 16 else max(1, num_perm // 2)
        self.threshold = threshold
        self.rows = rows
        self.bands = max(1, num_perm // rows)
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 1 << 32, size=num_perm, dtype=np.uint64)
        self.b = rng.integers(0, 1 << 32, size=num_perm, dtype=np.uint64)
        self.buckets: dict[tuple[int, bytes], list[int]] = {}
        self.sets: list[set[int]] = []

    def signature(self, hashes: set[int]) -> np.ndarray:
        """The MinHash signature of a set of 32-bit hashes (an empty set hashes as ``{0}``)."""
        values = np.fromiter(hashes or {0}, dtype=np.uint64, count=len(hashes) or 1)
        # a < 2^32 and x < 2^32, so a*x + b < 2^64: no uint64 overflow before the modulus
        permuted = (np.outer(self.a, values) + self.b[:, None]) % _MERSENNE & _MASK32
        return permuted.min(axis=1)

    def _band_keys(self, hashes: set[int]) -> list[tuple[int, bytes]]:
        signature = self.signature(hashes)
        rows = self.rows
        return [(b, signature[b * rows : (b + 1) * rows].tobytes()) for b in range(self.bands)]

    def find_or_add(self, hashes: set[int]) -> tuple[int, float] | None:
        """The most similar indexed set (its index and Jaccard; lowest index on a tie) when it
        reaches the threshold; otherwise index ``hashes`` and return ``None``."""
        keys = self._band_keys(hashes)
        best, best_j = None, 0.0
        for index in sorted({i for key in keys for i in self.buckets.get(key, ())}):
            similarity = jaccard(hashes, self.sets[index])
            if similarity > best_j:
                best, best_j = index, similarity
        if best is not None and best_j >= self.threshold:
            return best, best_j
        for key in keys:
            self.buckets.setdefault(key, []).append(len(self.sets))
        self.sets.append(hashes)
        return None

    def __len__(self) -> int:
        return len(self.sets)
