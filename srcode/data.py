"""The rows and the model a config names: ``data.source`` into rows, ``model.path`` checked.

``load_examples`` reads a PrimeVul+ dataset (``sft``/``rl`` configs) or SafeCoder/SVEN files
directly; ``check_model_source`` turns a model path that does not exist into one
:class:`ConfigError` line before anything heavy is built (a missing ``init_from`` used to cost
8 s and a 112-line traceback).
"""

from __future__ import annotations

import ast
import json
import random
from pathlib import Path
from typing import Any, Literal

from srcode.config import TINY_MODEL, DataConfig, ModelConfig
from srcode.errors import ConfigError


def check_model_source(path: str, revision: str | None, where: str) -> None:
    """Fail in one line unless ``path`` is tiny://, a model directory, or a reachable Hub id.

    A local-looking path (absolute, ``./``, ``~``, or an existing parent) must be a directory
    with a ``config.json``; anything else is treated as a Hub id and resolved with
    huggingface_hub alone (its config.json only, from the cache when offline), never by
    building a model.
    """
    if path == TINY_MODEL:
        return
    local = Path(path).expanduser()
    looks_local = (
        local.is_absolute() or path.startswith((".", "~")) or path.count("/") > 1 or local.exists()
    )
    if looks_local:
        if not local.is_dir():
            raise ConfigError(
                f"{where}: model directory {path} does not exist (train it first, e.g. "
                "`srcode sft CONFIG`, or point it at a Hub id or a saved model)"
            )
        if not (local / "config.json").is_file():
            raise ConfigError(f"{where}: {path} has no config.json: not a saved model directory")
        return
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        hf_hub_download(path, "config.json", revision=revision)
    except LocalEntryNotFoundError:
        raise ConfigError(
            f"{where}: {path!r} is not a local directory and not in the Hugging Face cache "
            "(offline, or the Hub is unreachable): give a local model directory, or download "
            "it first with `hf download MODEL`"
        ) from None
    except RepositoryNotFoundError:
        raise ConfigError(
            f"{where}: {path!r} is neither a local directory nor a model on the Hub "
            "(check the spelling; private models need `hf auth login`)"
        ) from None
    except Exception as exc:  # any other failure means the same to the user
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}: cannot resolve model {path!r}: {reason[:200]}") from None


def resolve_path(value: str, config_path: str | None) -> Path:
    """A relative path in a config: beside the config file when it exists there, else cwd."""
    path = Path(value).expanduser()
    if path.is_absolute() or config_path is None:
        return path
    beside = Path(config_path).parent / path
    return beside.resolve() if beside.exists() else path


def resolve_model_path(model: ModelConfig, output_dir: str | Path) -> str:
    """The directory or Hub id to load; ``tiny://`` builds the tiny model on first use."""
    if model.path != TINY_MODEL:
        return model.path
    from vul2safe.testing.tiny_model import build_tiny_model

    target = Path(output_dir) / "tiny-model"
    if not (target / "config.json").exists():
        build_tiny_model(target, seed=0)
    return str(target)


def load_examples(
    data: DataConfig, kind: Literal["sft", "rl"], config_path: str | None = None
) -> list[dict[str, Any]]:
    """Rows of the ``sft`` or ``rl`` config named by ``data.source``, filtered and capped.

    sft rows: prompt, completion, language. rl rows: prompt, reference, vulnerable,
    vulnerable_spans, secure_spans, language (spans are ``[[start, end], ...]`` character
    offsets into ``vulnerable`` and ``reference``), plus cwe when known.
    """
    scheme, sep, rest = data.source.partition(":")
    if sep and scheme in {"safecoder", "sven"}:
        rows = _repair_rows(scheme, resolve_path(rest, config_path))
        rows = [_as_sft(row) if kind == "sft" else row for row in rows]
    else:
        rows = _primevul_plus_rows(data, kind, config_path)
    if data.languages:
        from vul2safe.languages import normalize_language

        wanted = {normalize_language(lang) for lang in data.languages}
        rows = [row for row in rows if row.get("language") in wanted]
    if data.shuffle_seed is not None:
        random.Random(data.shuffle_seed).shuffle(rows)
    if data.max_samples is not None:
        rows = rows[: data.max_samples]
    if not rows:
        raise ConfigError(f"data.source {data.source!r} gave no rows (check languages/split)")
    return rows


def _primevul_plus_rows(
    data: DataConfig, kind: str, config_path: str | None
) -> list[dict[str, Any]]:
    import datasets

    local = resolve_path(data.source, config_path)
    if local.is_dir():
        saved = local / kind
        if (saved / "dataset_dict.json").exists() or (saved / "state.json").exists():
            loaded = datasets.load_from_disk(str(saved))
            table = loaded[data.split] if isinstance(loaded, datasets.DatasetDict) else loaded
        else:
            table = datasets.load_dataset(str(local), name=kind, split=data.split)
    else:
        table = datasets.load_dataset(
            data.source, name=kind, split=data.split, revision=data.revision
        )
    return [dict(row) for row in table]


def _repair_rows(scheme: str, path: Path) -> list[dict[str, Any]]:
    """SafeCoder/SVEN before/after pairs as ``rl`` rows (the PrimeVul+ builder's fallback)."""
    from vul2safe.languages import detect_language

    if not path.exists():
        raise ConfigError(f"data.source: {path} does not exist")
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    rows: list[dict[str, Any]] = []
    for file in files:
        for line in file.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            record = json.loads(line)
            language = detect_language(record.get("file_name", "")) or "unknown"
            changes = record.get("char_changes") or {}
            if isinstance(changes, str):  # SVEN stores the dict as its Python repr
                changes = ast.literal_eval(changes)
            prompt = record.get("description") if scheme == "safecoder" else None
            rows.append(
                {
                    "prompt": prompt or _sven_prompt(record, language),
                    "reference": record["func_src_after"],
                    "vulnerable": record["func_src_before"],
                    "vulnerable_spans": [
                        [c["char_start"], c["char_end"]] for c in changes.get("deleted", [])
                    ],
                    "secure_spans": [
                        [c["char_start"], c["char_end"]] for c in changes.get("added", [])
                    ],
                    "language": language,
                    "cwe": [str(record.get("vul_type", "")).upper()],
                }
            )
    return rows


def _sven_prompt(record: dict[str, Any], language: str) -> str:
    """SVEN has no task text: name the function and show its first line, no weakness hint."""
    first_line = record["func_src_after"].strip().splitlines()[0]
    return (
        f"Write the {language} function `{record.get('func_name', 'f')}` "
        f"(file {record.get('file_name', '?')}). It begins:\n{first_line}"
    )


def _as_sft(row: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": row["prompt"], "completion": row["reference"], "language": row["language"]}
