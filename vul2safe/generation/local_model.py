"""Where a local (in-process) model comes from, shared by the transformers and vLLM backends.

:func:`resolve_model` turns what the user typed — a model directory or a Hugging Face Hub id —
into what ``from_pretrained``/``vllm.LLM`` should load, with one clear error for a missing path
or an uncached Hub id offline, and an exact identity (commit hash, or a content fingerprint for
a plain directory) for result files and the generation cache. :func:`resolve_dtype` gives both
backends the same reading of ``--dtype auto``: the checkpoint's own dtype (vLLM alone would
turn a float32 checkpoint into bfloat16/float16).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from vul2safe.errors import Vul2SafeError

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUE = {"1", "on", "true", "yes"}
DTYPES = ("float32", "float16", "bfloat16")


@dataclass(frozen=True)
class ResolvedModel:
    """Where ``from_pretrained`` should load from, and which exact version that is."""

    source: str  # a local directory or a Hub repo id
    revision: str | None  # what to pass to from_pretrained (None: default branch)
    resolved_revision: str | None  # commit hash, or "local-<hash>" for a plain directory
    local_files_only: bool
    cache_dir: str | None


def hub_offline() -> bool:
    """Read the offline switches now, not at import time (tests set them per test)."""
    import huggingface_hub.constants as hub_constants

    env = (os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or "").lower()
    return env in _TRUE or bool(hub_constants.HF_HUB_OFFLINE)


def hub_cache_dir() -> str:
    """The Hub cache as the environment says now (``HF_HUB_CACHE`` > ``HF_HOME``/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.path.expanduser(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return os.path.join(os.path.expanduser(home), "hub")


def local_fingerprint(path: Path) -> str:
    """A cheap identity for a model directory that has no commit hash.

    Hashes every file's name and size plus its first and last 64 KiB (safetensors headers and
    the tail of the weights), so an overwritten checkpoint gets a new identity — and stale
    cache entries miss — without reading gigabytes.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file() and ".cache" not in p.parts):
        size = file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{size}\0".encode())
        with file.open("rb") as handle:
            digest.update(handle.read(65536))
            if size > 65536:
                handle.seek(max(size - 65536, 65536))
                digest.update(handle.read(65536))
    return "local-" + digest.hexdigest()[:16]


def snapshot_commit(path: Path) -> str | None:
    """``.../models--org--name/snapshots/<commit>`` → ``<commit>``."""
    parts = path.resolve().parts
    for i in range(len(parts) - 2, 0, -1):
        if parts[i] == "snapshots" and parts[i - 1].startswith("models--"):
            return parts[i + 1]
    return None


def cached_config(repo_id: str, revision: str | None, cache_dir: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json", cache_dir=cache_dir, revision=revision)
    return Path(found) if isinstance(found, str) else None


def resolve_model(model: str, revision: str | None = None) -> ResolvedModel:
    """A local directory, or a Hub id that is cached (or downloadable when online).

    Raises one clear :class:`Vul2SafeError` for a missing path or an uncached Hub id offline.
    """
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir() or not (path / "config.json").is_file():
            raise Vul2SafeError(f"model path is not a model directory (no config.json): {model}")
        commit = snapshot_commit(path) or local_fingerprint(path)
        return ResolvedModel(str(path), revision, commit, True, None)
    if not _HUB_ID.match(model) or model.startswith("."):
        raise Vul2SafeError(f"model path does not exist: {model}")
    cache_dir = hub_cache_dir()
    cached = cached_config(model, revision, cache_dir)
    offline = hub_offline()
    if offline and cached is None:
        raise Vul2SafeError(
            f"model '{model}' not found: not a local directory and not in the Hugging Face "
            "cache (offline); pass a local path"
        )
    if offline and cached is not None:
        # Load the snapshot directory itself: transformers still probes the Hub for optional
        # files (adapter configs) when given a repo id, which offline means retry-and-sleep.
        snapshot = cached.parent
        return ResolvedModel(str(snapshot), None, snapshot_commit(snapshot), True, None)
    hub_commit = snapshot_commit(cached.parent) if cached is not None else None
    return ResolvedModel(model, revision, hub_commit, offline, cache_dir)


def with_downloaded_revision(resolved: ResolvedModel) -> ResolvedModel:
    """After a download, the snapshot directory names the commit that was fetched."""
    if resolved.resolved_revision is not None or resolved.cache_dir is None:
        return resolved
    cached = cached_config(resolved.source, resolved.revision, resolved.cache_dir)
    if cached is None:
        return resolved
    return replace(resolved, resolved_revision=snapshot_commit(cached.parent))


def checkpoint_dtype(resolved: ResolvedModel) -> str | None:
    """The ``dtype``/``torch_dtype`` a checkpoint's config.json declares, if it is on disk."""
    path = Path(resolved.source) / "config.json"
    if not path.is_file() and resolved.cache_dir is not None:
        path = cached_config(resolved.source, resolved.revision, resolved.cache_dir) or path
    if not path.is_file() and not resolved.local_files_only:  # online, not cached yet
        from huggingface_hub import hf_hub_download

        try:
            path = Path(
                hf_hub_download(
                    resolved.source,
                    "config.json",
                    revision=resolved.revision,
                    cache_dir=resolved.cache_dir,
                )
            )
        except Exception:  # the loader reports a missing model with its own clear error
            return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    found = config.get("dtype") or config.get("torch_dtype")
    if found is None and isinstance(config.get("text_config"), dict):
        text = config["text_config"]
        found = text.get("dtype") or text.get("torch_dtype")
    return str(found).removeprefix("torch.") if found else None


def resolve_dtype(name: str, resolved: ResolvedModel) -> str:
    """``auto`` → the checkpoint's dtype (float32 when it names none), as transformers does.

    Both in-process backends load with this, so ``--dtype auto`` means one thing: vLLM's own
    ``auto`` would downcast a float32 checkpoint, and its samples would differ from
    transformers' on the same model.
    """
    if name in ("", "auto"):
        found = checkpoint_dtype(resolved)
        return found if found in DTYPES else "float32"
    if name not in DTYPES:
        raise Vul2SafeError(f"unknown dtype {name!r}; use auto, float32, float16 or bfloat16")
    return name
