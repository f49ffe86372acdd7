"""Stage 6, publish: the dataset card, ``save_to_disk`` + Parquet, and ``push_to_hub``.

Files written under ``OUTPUT``:

* ``dataset/<config>/`` — ``DatasetDict.save_to_disk`` per config (``load_from_disk``);
* ``parquet/<config>/<split>.parquet`` — one Parquet file per config and split;
* ``README.md`` — the card, its ``configs:`` pointing at the Parquet files, so
  ``load_dataset("OUTPUT", "sft")`` works on the folder as is;
* ``card.hub.md`` — the same card with the Hub's file layout (``<config>/<split>-*``, what
  ``push_to_hub(config_name=...)`` writes): the card as published.

The card is rendered from ``templates/card.md.j2`` with ``DatasetCard.from_template`` (the
YAML front matter comes from :class:`huggingface_hub.DatasetCardData`) and parsed back with
``DatasetCard`` before anything is written, so a card that does not parse never ships.

``push_to_hub`` pushes each config with ``DatasetDict.push_to_hub(repo, config_name=...)``
and then the card (keeping the ``dataset_info`` the pushes wrote). Offline mode or a missing
token fail *before* the build spends teacher calls (:func:`check_hub_ready`), with one line.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vul2safe.build import BuildContext, StageResult
from vul2safe.build.records import STAGES, RepairPair, read_done, stage_counts
from vul2safe.errors import Vul2SafeError
from vul2safe.fileio import write_text_atomic

if TYPE_CHECKING:
    from datasets import DatasetDict

TEMPLATE = Path(__file__).parent / "templates" / "card.md.j2"
CONFIG_DESCRIPTIONS = {
    "pairs": "one verified repair pair, with every stage's output",
    "sft": "one prompt → the secure (fixed) function",
    "rl": "one prompt, the reference fix, the vulnerable code and their spans",
    "eval": "one held-out prompt for `vul2safe eval --benchmarks primevul-plus`",
}
_TRUE = {"1", "on", "yes", "true"}


class PublishError(Vul2SafeError):
    """The dataset could not be published (offline, not logged in, the Hub refused)."""


@dataclass
class PublishConfig:
    """Settings of the publish stage."""

    push_to_hub: str | None = None  # OWNER/NAME on the Hub; None: local files only
    private: bool = False
    pretty_name: str = "PrimeVul+"
    license: str = "mit"
    build_note: str | None = None  # shown at the top of the card (e.g. what teacher was used)
    max_cwe_rows: int = 40  # the CWE table shows the most frequent ones


def _config(ctx: BuildContext | None) -> PublishConfig:
    config = getattr(getattr(ctx, "config", None), "publish", None)
    return config if isinstance(config, PublishConfig) else PublishConfig()


# ----------------------------------------------------------------------------- local files


def save_dataset(datasets: Mapping[str, DatasetDict], output: Path) -> dict[str, Path]:
    """``save_to_disk`` each config and write its splits as Parquet; replaces old copies."""
    from vul2safe.build.assemble import require_datasets

    require_datasets()
    import datasets as hf_datasets

    bars = hf_datasets.is_progress_bar_enabled()
    hf_datasets.disable_progress_bars()  # the CLI draws its own; these would spam logs
    written: dict[str, Path] = {}
    try:
        for name, dataset in datasets.items():
            target = output / "dataset" / name
            parquet = output / "parquet" / name
            for folder in (target, parquet):
                if folder.exists():
                    shutil.rmtree(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            dataset.save_to_disk(str(target))
            parquet.mkdir(parents=True, exist_ok=True)
            for split, table in dataset.items():
                table.to_parquet(str(parquet / f"{split}.parquet"))
            written[name] = target
    finally:
        if bars:
            hf_datasets.enable_progress_bars()
    return written


# ----------------------------------------------------------------------------- the card


def data_files(datasets: Mapping[str, DatasetDict], layout: str) -> list[dict[str, Any]]:
    """The card's ``configs:`` list; ``layout`` "hub" (push_to_hub) or "local" (Parquet)."""
    configs = []
    for name, dataset in datasets.items():
        if not len(dataset):
            continue
        files = [
            {
                "split": split,
                "path": f"{name}/{split}-*"
                if layout == "hub"
                else f"parquet/{name}/{split}.parquet",
            }
            for split in dataset
        ]
        configs.append({"config_name": name, "data_files": files})
    return configs


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M" if n < 1_000_000 else "n>1M"


def _breakdown(
    pairs: Sequence[RepairPair], keys: Any, limit: int | None = None
) -> list[dict[str, Any]]:
    """Rows ``{key, total, splits}`` sorted by count; ``keys(pair)`` yields a pair's keys."""
    totals: Counter[str] = Counter()
    splits: dict[str, Counter[str]] = {}
    for pair in pairs:
        for key in keys(pair):
            totals[key] += 1
            splits.setdefault(key, Counter())[str(pair.split)] += 1
    ordered = sorted(totals, key=lambda k: (-totals[k], k))[:limit]
    return [{"key": k, "total": totals[k], "splits": dict(splits[k])} for k in ordered]


def _teacher_text(teacher: Any) -> str:
    """The teacher's identity as recorded by the reflect stage, on one line."""
    if isinstance(teacher, dict) and teacher:
        shown = {k: v for k, v in teacher.items() if v not in (None, "") and k != "chat_template"}
        return "; ".join(f"{k}: `{v}`" for k, v in shown.items())
    return str(teacher) if teacher else "none recorded (no teacher stage ran in this build)"


def card_context(
    datasets: Mapping[str, DatasetDict],
    pairs: Sequence[RepairPair],
    *,
    config: PublishConfig,
    stages: Sequence[Mapping[str, Any]] = (),
    sources: Sequence[Mapping[str, Any]] = (),
    assemble: Mapping[str, Any] | None = None,
    assemble_stats: Mapping[str, Any] | None = None,
    teacher: Any = None,
    parameters: str = "",
    settings: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> dict[str, Any]:
    """Everything the template shows, computed from the built data and the stage records."""
    from vul2safe import __version__
    from vul2safe.build.assemble import AssembleConfig

    assemble = dict(assemble or asdict(AssembleConfig()))
    stats = dict(assemble_stats or {})
    order = ["train", "validation", "test", "eval"]
    split_names = sorted(
        {s for d in datasets.values() for s in d} | {str(p.split) for p in pairs},
        key=lambda s: (order.index(s) if s in order else len(order), s),
    )
    configs = [
        {
            "name": name,
            "description": CONFIG_DESCRIPTIONS.get(name, ""),
            "rows": {s: d[s].num_rows for s in d},
        }
        for name, d in datasets.items()
    ]
    contaminated = stats.get("contaminated") or {}
    decontamination = [
        {
            "name": name,
            "tasks": info.get("tasks", "skipped: " + str(info.get("skipped", ""))),
            "dropped": contaminated.get(name, 0),
            "source": info.get("source", ""),
            "dataset_hash": info.get("dataset_hash", ""),
        }
        for name, info in (stats.get("benchmarks") or {}).items()
    ]
    styles = Counter(
        str(p.get("style") or "unspecified") for pair in pairs for p in pair.prompts or []
    )
    cwe_count = len({c for p in pairs for c in p.cwe or ["unknown"]})
    return {
        "pretty_name": config.pretty_name,
        "license": config.license,
        "build_note": config.build_note,
        "repo_id": repo_id or "OWNER/primevul-plus",
        "configs": configs,
        "split_names": split_names,
        "group_by": assemble.get("group_by", "commit"),
        "groups": stats.get("groups", len({p.commit for p in pairs})),
        "eval_from": "eval" if "eval" in split_names else "test",
        "sources": list(sources),
        "pair_splits": dict(Counter(str(p.split) for p in pairs)),
        "total_pairs": len(pairs),
        "total_prompts": sum(styles.values()),
        "by_language": _breakdown(pairs, lambda p: [p.language]),
        "by_cwe": _breakdown(pairs, lambda p: p.cwe or ["unknown"], config.max_cwe_rows),
        "cwe_rows_hidden": max(0, cwe_count - config.max_cwe_rows),
        "by_style": sorted(styles.items(), key=lambda kv: (-kv[1], kv[0])),
        "stages": list(stages),
        "assemble": assemble,
        "decontamination": decontamination,
        "teacher": _teacher_text(teacher),
        "parameters": parameters,
        "settings": dict(settings or {}),
        "vul2safe_version": __version__,
        "built_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def render_card(
    datasets: Mapping[str, DatasetDict],
    context: Mapping[str, Any],
    *,
    layout: str = "hub",
    template: Path = TEMPLATE,
) -> str:
    """The card text; raises :class:`PublishError` if its YAML header does not parse."""
    from huggingface_hub import DatasetCard, DatasetCardData

    languages = sorted({row["key"] for row in context["by_language"]})
    card_data = DatasetCardData(
        language=["en", "code"],
        license=context["license"],
        pretty_name=context["pretty_name"],
        task_categories=["text-generation"],
        size_categories=[_size_category(int(context["total_pairs"]))],
        tags=["code", "security", "vulnerability-repair", "secure-code-generation", *languages],
        configs=data_files(datasets, layout),
    )
    card = DatasetCard.from_template(card_data, template_path=str(template), **context)
    return validate_card(str(card))


def validate_card(text: str) -> str:
    """Parse ``text`` the way the Hub does; the configs must be there."""
    from huggingface_hub import DatasetCard

    try:
        data = DatasetCard(text).data.to_dict()
    except Exception as exc:  # yaml errors, non-dict metadata
        raise PublishError(f"the rendered dataset card does not parse: {exc}") from exc
    if not data.get("configs"):
        raise PublishError("the rendered dataset card lists no configs (is the dataset empty?)")
    return text


# ----------------------------------------------------------------------------- the Hub


def _offline() -> bool:
    from huggingface_hub import constants

    env = any(
        os.environ.get(name, "").strip().lower() in _TRUE
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )
    return env or bool(constants.HF_HUB_OFFLINE)


def check_hub_ready(repo_id: str) -> None:
    """Fail early, with one line, when a push cannot work: offline, bad id, no token."""
    if _offline():
        raise PublishError(
            f"cannot push to the Hugging Face Hub ({repo_id}): offline mode is on "
            "(HF_HUB_OFFLINE/HF_DATASETS_OFFLINE); unset it or drop --push-to-hub"
        )
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PublishError(f"--push-to-hub wants OWNER/NAME, got {repo_id!r}")
    from huggingface_hub import get_token

    if not get_token():
        raise PublishError(
            f"cannot push to {repo_id}: not logged in to the Hugging Face Hub; run "
            "`hf auth login` or set HF_TOKEN"
        )


def push_dataset(
    datasets: Mapping[str, DatasetDict], card_text: str, repo_id: str, *, private: bool
) -> str:
    """Push every non-empty config, then the card; returns the dataset's Hub URL."""
    check_hub_ready(repo_id)
    from huggingface_hub import DatasetCard

    try:
        for name, dataset in datasets.items():
            if len(dataset):
                dataset.push_to_hub(
                    repo_id,
                    config_name=name,
                    private=private,
                    commit_message=f"PrimeVul+: config {name}",
                )
        card = DatasetCard(card_text)
        remote = DatasetCard.load(repo_id, repo_type="dataset")
        info = remote.data.to_dict().get("dataset_info")
        if info:  # the features and sizes push_to_hub computed: keep them
            card.data["dataset_info"] = info
        card.push_to_hub(repo_id, repo_type="dataset", commit_message="PrimeVul+: dataset card")
    except Vul2SafeError:
        raise
    except Exception as exc:  # HTTP, auth, network: one line for the user
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise PublishError(f"push to {repo_id} failed: {type(exc).__name__}: {first}") from exc
    return f"https://huggingface.co/datasets/{repo_id}"


# ----------------------------------------------------------------------------- the stage


def _source_rows(output: Path, pairs: Sequence[RepairPair]) -> list[dict[str, Any]]:
    """Provenance per source: upstream description and licence, pairs read and kept."""
    from vul2safe.build.records import dropped_path, kept_path, read_pairs

    read = Counter(
        p.source
        for path in (kept_path(output, "pairs"), dropped_path(output, "pairs"))
        for p in read_pairs(path)
    )
    kept = Counter(p.source for p in pairs)
    rows = []
    for name in sorted(set(read) | set(kept)):
        info: dict[str, Any] = {"name": name}
        try:
            from vul2safe.build.source import get_source

            info.update(get_source(name).describe())
        except Vul2SafeError:
            pass  # a plugin no longer installed: the counts still stand
        info.update(name=name, read=read.get(name, kept[name]), kept=kept.get(name, 0))
        info["citation"] = str(info.get("citation") or "").strip()
        rows.append(info)
    return rows


def _parameters(config: Any) -> str:
    """Every setting of the build, as the YAML ``--config`` accepts."""
    from vul2safe.build.config import dump_config

    if config is None:
        return "{}\n"
    return dump_config(config if hasattr(config, "model_dump") else dict(config))


def _settings(config: Any) -> dict[str, Any]:
    if config is not None and hasattr(config, "to_dict"):
        return dict(config.to_dict())
    return {}


def run_stage(pairs: list[RepairPair], ctx: BuildContext) -> StageResult:
    """Build the DatasetDicts, write them and the card, and push when asked."""
    from vul2safe.build.assemble import AssembleConfig, build_dataset

    config = _config(ctx)
    build_config = getattr(ctx, "config", None)
    assemble = getattr(build_config, "assemble", None)
    assemble = assemble if isinstance(assemble, AssembleConfig) else AssembleConfig()
    if config.push_to_hub:
        check_hub_ready(config.push_to_hub)
    if ctx.progress:
        ctx.progress("publish", 0, len(pairs))
    datasets = build_dataset(pairs, assemble)
    output = ctx.output
    reflect_done = read_done(output, "reflect") or {}
    context = card_context(
        datasets,
        pairs,
        config=config,
        stages=[stage_counts(output, s) for s in STAGES if s != "publish"],
        sources=_source_rows(output, pairs),
        assemble=asdict(assemble),
        assemble_stats=(read_done(output, "assemble") or {}).get("stats"),
        teacher=(reflect_done.get("stats") or {}).get("teacher") or reflect_done.get("teacher"),
        parameters=_parameters(build_config),
        settings=_settings(build_config),
        repo_id=config.push_to_hub,
    )
    hub_card = render_card(datasets, context, layout="hub")
    local_card = render_card(datasets, context, layout="local")
    written = save_dataset(datasets, output)
    write_text_atomic(output / "README.md", local_card)
    write_text_atomic(output / "card.hub.md", hub_card)
    stats: dict[str, Any] = {
        "configs": {name: {s: d[s].num_rows for s in d} for name, d in datasets.items()},
        "saved": {name: str(path) for name, path in written.items()},
        "card": str(output / "README.md"),
        "hub_card": str(output / "card.hub.md"),
    }
    if config.push_to_hub:
        stats["pushed_to"] = push_dataset(
            datasets, hub_card, config.push_to_hub, private=config.private
        )
    if ctx.progress:
        ctx.progress("publish", len(pairs), len(pairs))
    return StageResult(kept=list(pairs), stats=stats)
