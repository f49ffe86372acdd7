"""``srcode doctor`` reports the training extra's packages truthfully."""

from __future__ import annotations

import importlib.util

from typer.testing import CliRunner

from srcode.cli import TRAIN_PACKAGES, app


def test_doctor_lists_every_training_package() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    missing = [p for p in TRAIN_PACKAGES if importlib.util.find_spec(p) is None]
    assert result.exit_code == (1 if missing else 0)
    for package in TRAIN_PACKAGES:
        assert package in result.output
    for package in missing:
        assert f"{package:<13} missing" in result.output
