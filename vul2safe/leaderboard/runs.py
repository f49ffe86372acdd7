"""Finished ``vul2safe eval`` runs as the leaderboard reads them: one ``results.json`` each.

Only ``results.json`` is read (layout: ``docs/results.md``). A run that did not complete, or a
file this version cannot read, is refused rather than shown: a leaderboard with a half-finished
row would rank numbers that were never final.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from vul2safe.errors import InputError, UsageError

RESULTS_FILE = "results.json"
#: The ``results.json`` formats this module can read.
SUPPORTED_FORMATS = ("vul2safe-results/1",)

#: ``headline.metric`` of CyberSecEval's own number (its Insecure Code Detector's flag rate).
ICD_METRIC = "icd_insecure_code_rate"
#: ``func_sec.source`` of a func-sec@k decided by exploit tests (CWEval), not by scanners.
EXPLOIT_TESTS = "exploit tests"

__all__ = [
    "EXPLOIT_TESTS",
    "ICD_METRIC",
    "RESULTS_FILE",
    "SUPPORTED_FORMATS",
    "Interval",
    "Run",
    "Scores",
    "load_runs",
    "read_scores",
]


@dataclass(frozen=True)
class Interval:
    """A rate in ``[0, 1]`` with its 95 % CI bounds (``None`` when the run recorded none)."""

    rate: float
    low: float | None = None
    high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class Scores:
    """One benchmark's headline numbers for one run; ``None`` = the metric does not apply.

    ``func_sec_at_1`` is always the static one (tests pass, no scanner finding); where exploit
    tests decided func-sec (CWEval) that number is ``func_sec_exploit`` and the static one comes
    from ``func_sec_static``. ``icd_insecure`` is CyberSecEval's own published metric, read
    from ``headline``, shown beside (never instead of) our multi-scanner ``vulnerability``.
    """

    vulnerability: Interval | None
    pass_at_1: Interval | None
    func_sec_at_1: float | None
    invalid_rate: float | None
    icd_insecure: Interval | None = None
    icd_detector: str | None = None
    func_sec_exploit: Interval | None = None


@dataclass(frozen=True)
class Run:
    """What the leaderboard needs from one ``results.json``."""

    path: Path
    model_id: str
    backend: str | None
    n: int | None
    temperature: float | None
    created_at: str | None
    vul2safe_version: str | None
    scores: Mapping[str, Scores]

    @property
    def name(self) -> str:
        """The run directory's name: what tells two runs of one model apart."""
        return self.path.parent.name


def load_runs(dirs: Sequence[Path]) -> list[Run]:
    """Read each run directory (or ``results.json`` path), in the order given."""
    if not dirs:
        raise UsageError("no runs given; pass one or more directories written by `vul2safe eval`")
    runs: list[Run] = []
    seen: set[Path] = set()
    for given in dirs:
        path = _results_path(Path(given))
        if path.resolve() in seen:
            raise UsageError(f"{path} is given twice; list each run once")
        seen.add(path.resolve())
        runs.append(_read_run(path))
    return runs


def read_scores(entry: Mapping[str, Any], name: str, source: str = RESULTS_FILE) -> Scores:
    """One ``benchmarks.<name>`` block of a results dict, read as the leaderboard reads it
    (``vul2safe eval``'s summary uses it too, so the two cannot label a number differently)."""
    reader = _Reader(Path(source), f"re-run `vul2safe eval` to rewrite {source}")
    return reader.scores(dict(entry), f"benchmarks.{name}")


def _results_path(given: Path) -> Path:
    if given.is_dir():
        path = given / RESULTS_FILE
        if not path.is_file():
            raise InputError(
                f"{given}: no {RESULTS_FILE} here; pass a run directory written by "
                "`vul2safe eval --output DIR` (or finish that run first)"
            )
        return path
    if given.is_file():
        return given
    raise UsageError(
        f"{given}: no such file or directory; pass a run directory written by "
        f"`vul2safe eval --output DIR` or the {RESULTS_FILE} in it"
    )


def _read_run(path: Path) -> Run:
    fix = f"fix the file or re-run `vul2safe eval --output {path.parent}`"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read it ({exc.strerror or exc}); check the path") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text; {fix}") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}); {fix}"
        ) from exc
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object at the top level; {fix}")
    fmt = data.get("format")
    if fmt not in SUPPORTED_FORMATS:
        raise InputError(
            f"{path}: unknown results format {_short(fmt)} (this vul2safe reads "
            f"{', '.join(SUPPORTED_FORMATS)}); upgrade vul2safe or re-run `vul2safe eval`"
        )
    if data.get("completed") is not True:
        raise InputError(
            f'{path}: the run did not complete ("completed" is not true); resume it with '
            f"`vul2safe eval ... --output {path.parent}` or leave it out of the leaderboard"
        )
    return _Reader(path, fix).run(data)


class _Reader:
    """Typed access to a parsed ``results.json`` that names the bad key and the fix."""

    def __init__(self, path: Path, fix: str) -> None:
        self.path = path
        self.fix = fix

    def fail(self, where: str, problem: str, value: Any) -> NoReturn:
        where = where.replace("\n", "\\n").replace("\r", "\\r")  # keys come from the file
        raise InputError(f"{self.path}: {where} {problem}, not {_short(value)}; {self.fix}")

    def obj(self, data: Any, where: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail(where, "must be an object", data)
        return data

    def opt_obj(self, data: Any, where: str) -> dict[str, Any] | None:
        return None if data is None else self.obj(data, where)

    def opt_text(self, data: Any, where: str) -> str | None:
        if data is not None and not isinstance(data, str):
            self.fail(where, "must be a string", data)
        return data

    def opt_number(self, data: Any, where: str, *, unit: bool = False) -> float | None:
        if data is None:
            return None
        ok = isinstance(data, int | float) and not isinstance(data, bool) and math.isfinite(data)
        if not ok or (unit and not 0.0 <= data <= 1.0):
            self.fail(where, "must be a rate in [0, 1]" if unit else "must be a number", data)
        return float(data)

    def rate(self, data: Any, where: str) -> float:
        value = self.opt_number(data, where, unit=True)
        if value is None:
            self.fail(where, "must be a rate in [0, 1]", data)
        return value

    def run(self, data: dict[str, Any]) -> Run:
        model = self.obj(data.get("model"), "model")
        model_id = model.get("id")
        if not isinstance(model_id, str) or not model_id:
            self.fail("model.id", "must be a non-empty string", model_id)
        sampling = self.opt_obj(data.get("sampling"), "sampling") or {}
        n = self.opt_number(sampling.get("n"), "sampling.n")
        if n is not None and not n.is_integer():
            self.fail("sampling.n", "must be a whole number", sampling.get("n"))
        benchmarks = self.obj(data.get("benchmarks"), "benchmarks")
        return Run(
            path=self.path,
            model_id=model_id,
            backend=self.opt_text(model.get("backend"), "model.backend"),
            n=None if n is None else int(n),
            temperature=self.opt_number(sampling.get("temperature"), "sampling.temperature"),
            created_at=self.opt_text(data.get("created_at"), "created_at"),
            vul2safe_version=self.opt_text(data.get("vul2safe_version"), "vul2safe_version"),
            scores={name: self.scores(b, f"benchmarks.{name}") for name, b in benchmarks.items()},
        )

    def scores(self, data: Any, where: str) -> Scores:
        bench = self.obj(data, where)
        security = self.opt_obj(bench.get("security"), f"{where}.security")
        functional = self.opt_obj(bench.get("functional"), f"{where}.functional")
        func_sec = self.opt_obj(bench.get("func_sec"), f"{where}.func_sec")
        static, static_key, exploit = func_sec, f"{where}.func_sec", None
        if func_sec is not None and func_sec.get("source") == EXPLOIT_TESTS:
            exploit = self.func_sec_exploit(func_sec, f"{where}.func_sec")
            static_key = f"{where}.func_sec_static"
            static = self.opt_obj(bench.get("func_sec_static"), static_key)
        invalid = self.opt_obj(bench.get("invalid"), f"{where}.invalid")
        headline = self.opt_obj(bench.get("headline"), f"{where}.headline")
        icd = None
        if headline is not None and headline.get("metric") == ICD_METRIC:
            icd = self.icd(headline, f"{where}.headline")
        return Scores(
            vulnerability=None if security is None else self.vulnerability(security, where),
            pass_at_1=None if functional is None else self.pass_at_1(functional, where),
            func_sec_at_1=None
            if static is None
            else self.rate(static.get("func-sec@1"), f'{static_key}["func-sec@1"]'),
            invalid_rate=None
            if invalid is None
            else self.opt_number(invalid.get("rate"), f"{where}.invalid.rate", unit=True),
            icd_insecure=icd,
            icd_detector=None
            if headline is None or icd is None
            else self.opt_text(headline.get("detector"), f"{where}.headline.detector"),
            func_sec_exploit=exploit,
        )

    def icd(self, headline: dict[str, Any], key: str) -> Interval:
        """CyberSecEval's headline: share of samples ICD flags, with its bootstrap CI."""
        return self.counted_rate(headline, key, "n_samples")

    def counted_rate(self, block: dict[str, Any], key: str, count_key: str) -> Interval:
        """A block holding ``rate``, ``low``, ``high`` and its sample count at ``count_key``."""
        count = self.opt_number(block.get(count_key), f"{key}.{count_key}")
        return Interval(
            rate=self.rate(block.get("rate"), f"{key}.rate"),
            low=self.opt_number(block.get("low"), f"{key}.low", unit=True),
            high=self.opt_number(block.get("high"), f"{key}.high", unit=True),
            n=None if count is None else int(count),
        )

    def func_sec_exploit(self, func_sec: dict[str, Any], key: str) -> Interval:
        """func-sec@1 from exploit tests, with its CI over tasks when the run recorded one."""
        ci = self.opt_obj(func_sec.get("func-sec@1_ci"), f'{key}["func-sec@1_ci"]') or {}
        return Interval(
            rate=self.rate(func_sec.get("func-sec@1"), f'{key}["func-sec@1"]'),
            low=self.opt_number(ci.get("low"), f'{key}["func-sec@1_ci"].low', unit=True),
            high=self.opt_number(ci.get("high"), f'{key}["func-sec@1_ci"].high', unit=True),
        )

    def vulnerability(self, security: dict[str, Any], where: str) -> Interval:
        rates = self.obj(security.get("vulnerability_rate"), f"{where}.security.vulnerability_rate")
        key = f"{where}.security.vulnerability_rate.medium"
        return self.counted_rate(self.obj(rates.get("medium"), key), key, "n")

    def pass_at_1(self, functional: dict[str, Any], where: str) -> Interval:
        key = f"{where}.functional"
        pass_at_k = self.obj(functional.get("pass_at_k"), f"{key}.pass_at_k")
        ci = self.opt_obj(functional.get("pass_at_1_ci"), f"{key}.pass_at_1_ci") or {}
        return Interval(
            rate=self.rate(pass_at_k.get("pass@1"), f'{key}.pass_at_k["pass@1"]'),
            low=self.opt_number(ci.get("low"), f"{key}.pass_at_1_ci.low", unit=True),
            high=self.opt_number(ci.get("high"), f"{key}.pass_at_1_ci.high", unit=True),
        )


def _short(value: Any) -> str:
    """A one-line, bounded rendering of a bad value for an error message."""
    text = json.dumps(value, ensure_ascii=True) if value is not None else "missing/null"
    return text if len(text) <= 40 else text[:37] + "..."
