"""``--dtype auto`` means the checkpoint's dtype, for every in-process backend alike."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from vul2safe.errors import Vul2SafeError
from vul2safe.generation.local_model import resolve_dtype, resolve_model


def test_auto_is_the_checkpoints_dtype(tiny_model_dir: Path, tmp_path: Path) -> None:
    resolved = resolve_model(str(tiny_model_dir))
    assert resolve_dtype("auto", resolved) == "float32"
    assert resolve_dtype("bfloat16", resolved) == "bfloat16"  # an explicit choice wins
    copy = shutil.copytree(tiny_model_dir, tmp_path / "bf16")
    config = json.loads((copy / "config.json").read_text())
    config.update(dtype="bfloat16", torch_dtype="bfloat16")
    (copy / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", resolve_model(str(copy))) == "bfloat16"
    for key in ("dtype", "torch_dtype"):  # a checkpoint that names none: float32, as torch
        config.pop(key)
    (copy / "config.json").write_text(json.dumps(config))
    assert resolve_dtype("auto", resolve_model(str(copy))) == "float32"


def test_unknown_dtype_is_one_clear_error(tiny_model_dir: Path) -> None:
    with pytest.raises(Vul2SafeError, match="unknown dtype 'fp8'; use auto, float32"):
        resolve_dtype("fp8", resolve_model(str(tiny_model_dir)))
