"""``vul2safe eval MODEL``: generate → extract → score (security and function) → results.

One run directory holds everything a run produced:

- ``run.json`` — what was asked (model, backend, sampling, benchmarks, each benchmark's
  effective ``max_tokens``); a resumed run must ask for the same thing, or it is refused
  (mixing two models' samples would be silent corruption);
- ``samples.jsonl`` — one generated sample per line, appended as it arrives, so an
  interrupted run resumes with only the missing (task, sample) pairs;
- ``findings.sarif`` — every finding of every scanned sample;
- ``results.json`` — the numbers (layout: ``docs/results.md``), written last and atomically
  with ``"completed": true``; a stale one is removed when a run starts.

Everything that can fail on user input fails before generation starts: unknown benchmark,
missing data, a language no available scanner covers, a missing model, an unreachable
endpoint.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vul2safe import __version__
from vul2safe.benchmark import Benchmark, BenchmarkKind, Task, dataset_hash
from vul2safe.errors import UsageError
from vul2safe.fileio import write_json_atomic
from vul2safe.generation.base import BackendOptions, Prompt, SamplingParams, Session
from vul2safe.schema import Severity

FORMAT = "vul2safe-results/1"
#: ``max_tokens`` of a benchmark that sets no ``default_max_tokens`` (and no --max-tokens given)
FALLBACK_MAX_TOKENS = 512
ProgressFactory = Callable[[str, int], Callable[[int], None] | None]


@dataclass
class EvalConfig:
    """Everything ``vul2safe eval MODEL`` was asked to do."""

    model: str
    benchmarks: list[str]
    output: Path
    backend: str = "transformers"
    n: int = 1
    #: ``sampling.max_tokens`` None: each benchmark's own default (:func:`max_tokens_for`)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    backend_options: BackendOptions | None = None
    limit: int | None = None
    languages: list[str] | None = None
    data_dir: Path | None = None
    scanners: list[str] | None = None
    threshold: Severity = Severity.MEDIUM
    jobs: int = 2
    timeout_s: float | None = None  # None: the protocol's (official: 3.0 s)
    allow_unsafe: bool = False
    protocol: str = "official"  # functional scoring protocol (vul2safe.protocols)

    def manifest(self) -> dict[str, Any]:
        """The part of the config that decides which samples are generated."""
        options = self.backend_options or BackendOptions(model=self.model)
        return {
            "model": self.model,
            "revision": options.revision,
            "backend": self.backend,
            "use_chat_template": options.use_chat_template,
            "n": self.n,
            "sampling": self.sampling.to_dict(),
        }


@dataclass
class LoadedBenchmark:
    benchmark: Benchmark
    tasks: list[Task]
    source: str


def git_hash() -> str | None:
    """The vul2safe checkout's commit, when running from one."""
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def load_benchmarks(config: EvalConfig) -> dict[str, LoadedBenchmark]:
    """Resolve names and load data first: typos and missing data fail before any model work."""
    from vul2safe import plugins

    if not config.benchmarks:
        names = ", ".join(sorted(plugins.benchmarks.names()))
        raise UsageError(f"pass --benchmarks a,b (available: {names})")
    loaded: dict[str, LoadedBenchmark] = {}
    for name in dict.fromkeys(config.benchmarks):
        bench = plugins.benchmarks.get(name)
        tasks = bench.load(config.data_dir, limit=config.limit, languages=config.languages)
        if not tasks:
            raise UsageError(f"benchmark {name} has no tasks (check --languages / --limit)")
        loaded[name] = LoadedBenchmark(bench, tasks, bench.source(config.data_dir))
    return loaded


def is_functional(bench: Benchmark) -> bool:
    return str(bench.kind) in (BenchmarkKind.functional.value, BenchmarkKind.both.value)


def max_tokens_for(config: EvalConfig, bench: Benchmark) -> int:
    """What a benchmark is generated with: ``--max-tokens`` when given, else the benchmark's
    ``default_max_tokens`` (its official harness's, e.g. 4096 for HumanEval/MBPP Pro), else
    :data:`FALLBACK_MAX_TOKENS`. The local backends cap it per request by the context."""
    if config.sampling.max_tokens is not None:
        return config.sampling.max_tokens
    own = getattr(bench, "default_max_tokens", None)
    return int(own) if own else FALLBACK_MAX_TOKENS


def check_manifest(
    output: Path, manifest: dict[str, Any], max_tokens: dict[str, int] | None = None
) -> None:
    """Refuse to resume into a directory that holds another model's or setting's samples
    (``max_tokens``: each benchmark's effective value, which a default can change)."""
    path = output / "run.json"
    if not path.exists():
        return
    recorded = json.loads(path.read_text())
    previous = recorded.get("config", {})
    before = recorded.get("max_tokens") or {}
    for name, value in (max_tokens or {}).items():
        if name in before and before[name] != value:
            raise UsageError(
                f"{output} holds {name} samples generated with max_tokens {before[name]}, "
                f"this run asks for {value}; pass --max-tokens {before[name]} or use another "
                "--output directory"
            )
    if previous != manifest:
        changed = sorted(
            key for key in set(manifest) | set(previous) if manifest.get(key) != previous.get(key)
        )
        raise UsageError(
            f"{output} holds a run with a different {', '.join(changed)}; "
            "use another --output directory"
        )


def write_manifest(
    output: Path,
    manifest: dict[str, Any],
    benchmarks: list[str],
    max_tokens: dict[str, int] | None = None,
) -> None:
    """Record what this directory's samples are (only once the model opened)."""
    path = output / "run.json"
    max_tokens = dict(max_tokens or {})
    if path.exists():
        recorded = json.loads(path.read_text())
        benchmarks = list(dict.fromkeys([*recorded["benchmarks"], *benchmarks]))
        max_tokens = {**(recorded.get("max_tokens") or {}), **max_tokens}
    output.mkdir(parents=True, exist_ok=True)
    record = {"config": manifest, "benchmarks": benchmarks, "max_tokens": max_tokens}
    write_json_atomic(path, record)


def build_prompt(
    bench: Benchmark, task: Task, chat: bool, key: str, backend: str = "transformers"
) -> Prompt:
    """Chat models get the task as a user turn (plus the benchmark's assistant prefix);
    completion models continue the code prefix (functional) or the instruction text.
    A benchmark with its own official prompts (``generation_prompt``) builds them itself."""
    own = getattr(bench, "generation_prompt", None)
    if own is not None:
        return own(task, key, chat=chat, backend=backend)  # type: ignore[no-any-return]
    if chat:
        return Prompt(
            key=key,
            mode="chat",
            messages=({"role": "user", "content": task.prompt},),
            response_prefix=str(task.metadata.get("response_prefix", "")),
        )
    text = bench.completion_prefix(task) or task.prompt + "\n"
    return Prompt(key=key, mode="completion", text=text)


def open_session(config: EvalConfig) -> Session:
    from vul2safe import plugins

    backend = plugins.backends.get(config.backend)
    options = config.backend_options or BackendOptions(model=config.model)
    return backend.open(options)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _sample_field_for_scoring(prompt: Prompt) -> str:
    """Chat answers that continue a response prefix are completions of the code prefix."""
    return "completion" if prompt.mode == "completion" or prompt.response_prefix else "solution"


def split_by_benchmark(
    samples: Sequence[dict[str, Any]], names: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    by_name: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for sample in samples:
        if sample.get("benchmark") in by_name:
            by_name[sample["benchmark"]].append(sample)
    for rows in by_name.values():
        rows.sort(key=lambda s: (s["task_id"], s["sample_index"]))
    return by_name


@dataclass
class EvalProgress:
    """Progress callbacks the CLI provides: ``start(label, total)`` returns ``advance(n)``."""

    start: ProgressFactory = lambda label, total: None


def run_eval(config: EvalConfig, progress: EvalProgress | None = None) -> dict[str, Any]:
    """Generate for every benchmark, score, and write ``results.json`` last."""
    from vul2safe.cache import Cache
    from vul2safe.generation.runner import generate_samples
    from vul2safe.sarif import to_sarif

    progress = progress or EvalProgress()
    output = config.output
    loaded = load_benchmarks(config)
    _check_security_coverage(config, loaded)
    max_tokens = {name: max_tokens_for(config, item.benchmark) for name, item in loaded.items()}
    check_manifest(output, config.manifest(), max_tokens)
    results_path = output / "results.json"

    cache = Cache()
    with open_session(config) as session:
        write_manifest(output, config.manifest(), list(loaded), max_tokens)
        results_path.unlink(missing_ok=True)  # a stale result must not outlive a new run
        description = session.describe()
        chat = description.get("mode", "chat") == "chat"
        prompts: list[Prompt] = []
        owners: dict[str, tuple[str, Task]] = {}
        all_ids = [task.task_id for item in loaded.values() for task in item.tasks]
        clash = len(set(all_ids)) < len(all_ids)  # then samples are keyed "benchmark:task"
        for name, item in loaded.items():
            for task in item.tasks:
                key = f"{name}:{task.task_id}" if clash else task.task_id
                prompt = build_prompt(item.benchmark, task, chat, key, config.backend)
                prompts.append(prompt)
                owners[prompt.key] = (name, task)
        advance = progress.start("generating", len(prompts) * config.n)
        samples = []
        for limit in dict.fromkeys(max_tokens.values()):  # one pass per max_tokens value
            samples += generate_samples(
                session,
                [p for p in prompts if max_tokens[owners[p.key][0]] == limit],
                replace(config.sampling, max_tokens=limit),
                config.n,
                output / "samples.jsonl",
                extra_fields=lambda p: {
                    "benchmark": owners[p.key][0],
                    "field": _sample_field_for_scoring(p),
                    "prefilled": p.mode == "chat" and bool(p.response_prefix),
                },
                cache=cache,
                progress=advance,
            )

    for sample in samples:  # the benchmark's own task id, whatever the key was
        sample["task"] = owners[sample["task_id"]][1].task_id
    by_benchmark = split_by_benchmark(samples, list(loaded))
    block: dict[str, Any] = {}
    sarif_results: list[Any] = []
    scanners_meta: dict[str, dict[str, str]] = {}
    for name, item in loaded.items():
        rows = by_benchmark[name]
        entry, sample_results, meta = score_benchmark(config, item, rows, cache, progress)
        block[name] = entry
        sarif_results += sample_results
        scanners_meta.update(meta)

    write_json_atomic(output / "findings.sarif", to_sarif(sarif_results, scanners_meta))
    results = {
        "format": FORMAT,
        "completed": False,
        "vul2safe_version": __version__,
        "git_hash": git_hash(),
        "created_at": utc_now(),
        "model": {
            "id": config.model,
            "revision": description.get("revision"),
            "backend": config.backend,
            "mode": description.get("mode"),
            "chat_template": description.get("chat_template"),
            "context_window": description.get("context_window"),  # None: the server's
        },
        # max_tokens: --max-tokens (null: each benchmark's default); the value each benchmark
        # was generated with is max_tokens_by_benchmark (a ceiling the context may lower)
        "sampling": {
            "n": config.n,
            **config.sampling.to_dict(),
            "max_tokens_by_benchmark": max_tokens,
        },
        "severity_threshold": config.threshold.value,
        "scanners": scanners_meta,
        "benchmarks": block,
    }
    results["completed"] = True
    write_json_atomic(results_path, results)
    return results


def _security_languages(config: EvalConfig, item: LoadedBenchmark) -> set[str]:
    return {task.language for task in item.tasks}


def _wants_security(config: EvalConfig, item: LoadedBenchmark) -> bool:
    """Security benchmarks always; functional ones when a scanner covers their language."""
    if not is_functional(item.benchmark):
        return True
    from vul2safe.scanning import select_scanners

    languages = _security_languages(config, item)
    chosen, _ = select_scanners(config.scanners, languages)
    return any(languages & scanner.languages for scanner in chosen)


def _check_security_coverage(config: EvalConfig, loaded: dict[str, LoadedBenchmark]) -> None:
    """A security benchmark in a language no available scanner covers fails before generation."""
    from vul2safe.security import check_scanners_for

    for item in loaded.values():
        if not is_functional(item.benchmark):
            check_scanners_for(_security_languages(config, item), config.scanners)
        check_headline = getattr(item.benchmark, "check_headline", None)
        if check_headline is not None:  # e.g. CyberSecEval's ICD rate needs ICD
            check_headline()


def score_benchmark(
    config: EvalConfig,
    item: LoadedBenchmark,
    rows: list[dict[str, Any]],
    cache: Any,
    progress: EvalProgress,
) -> tuple[dict[str, Any], list[Any], dict[str, dict[str, str]]]:
    """Score one benchmark's samples: function (sandbox), security (scanners), func-sec."""
    from vul2safe.functional import score_samples
    from vul2safe.sandbox import SandboxLimits
    from vul2safe.security import func_sec, score_security

    bench = item.benchmark
    samples = [
        {
            "task_id": row["task"],
            "sample_index": row["sample_index"],
            _scored_field(row): row["completion"],
            "finish_reason": row.get("finish_reason"),
        }
        for row in rows
    ]
    entry: dict[str, Any] = {
        "kind": str(bench.kind),
        "dataset": {
            "name": bench.name,
            "version": bench.version,
            "hash": dataset_hash(item.tasks),
            "n_tasks": len(item.tasks),
            "source": item.source,
        },
        "n_samples": len(samples),
        "invalid": None,
        "security": None,
        "functional": None,
        "func_sec": None,
    }
    passed: dict[tuple[str, int], bool] | None = None
    own_tests = getattr(bench, "score_entry", None)
    if callable(own_tests):  # a benchmark with its own tests and metrics (cweval)
        bar = progress.start(f"running {bench.name}", len(samples))
        passed = own_tests(entry, item.tasks, samples, config=config, cache=cache, progress=bar)
    elif is_functional(bench):
        functional = score_samples(
            bench,
            item.tasks,
            [{k: v for k, v in s.items() if k != "sample_index"} for s in samples],
            jobs=config.jobs,
            limits=None if config.timeout_s is None else SandboxLimits(timeout_s=config.timeout_s),
            allow_unsafe=config.allow_unsafe,
            protocol=config.protocol,
            progress=progress.start(f"running {bench.name}", len(samples)),
        )
        entry["functional"] = {
            "pass_at_k": functional.pass_at_k,
            "pass_at_k_label": functional.pass_at_k_label,
            "pass_at_k_sanitized": functional.pass_at_k_sanitized,
            "pass_at_k_higher_of_raw_and_sanitized": (
                functional.pass_at_k_higher_of_raw_and_sanitized
            ),
            "protocol": functional.protocol["name"],
            "pass_at_1_ci": functional.pass_at_1_ci,
            "n_tasks_scored": functional.n_tasks_scored,
            "outcomes": functional.outcomes,
        }
        entry["invalid"] = _invalid_block(functional.invalid_outputs, len(samples))
        passed = {(s.task_id, s.index): s.passed for s in functional.samples}

    sarif_results: list[Any] = []
    meta: dict[str, dict[str, str]] = {}
    if _wants_security(config, item):
        modes = {row["task"]: row.get("field") for row in rows}
        mode = "completion" if "completion" in modes.values() else "chat"
        security = score_security(
            item.tasks,
            samples,
            scanners=config.scanners,
            threshold=config.threshold,
            mode=mode,
            cache=cache,
        )
        entry["security"] = security.to_dict()
        headline = getattr(bench, "headline", None)
        if headline is not None:  # the benchmark's own published metric, beside ours
            entry["headline"] = headline(item.tasks, samples)
        if entry["invalid"] is None:
            entry["invalid"] = dict(security.invalid)
        sarif_results = list(security.sarif_results)
        meta = dict(security.scanner_versions)
        if passed is not None and samples:
            static = func_sec(passed, security.flagged())
            # a dynamic func-sec (exploit tests) is the headline; the static one stays beside
            entry["func_sec" if entry["func_sec"] is None else "func_sec_static"] = static
    if entry["invalid"] is None:
        entry["invalid"] = _invalid_block({}, len(samples))
    return entry, sarif_results, meta


def _scored_field(row: dict[str, Any]) -> str:
    """A server that ignored the assistant prefill answered from scratch: a ``solution``."""
    from vul2safe.protocols import label_field

    field = str(row.get("field", "solution"))
    return label_field(row["completion"], field) if row.get("prefilled") else field


def _invalid_block(counts: dict[str, int], n: int) -> dict[str, Any]:
    from vul2safe.security import INVALID_CLASSES

    block: dict[str, Any] = {name: int(counts.get(name, 0)) for name in INVALID_CLASSES}
    block["total"] = sum(block[name] for name in INVALID_CLASSES)
    block["rate"] = block["total"] / n if n else 0.0
    return block
