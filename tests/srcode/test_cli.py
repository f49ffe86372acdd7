"""``srcode``'s command line: doctor, one-line errors, the output option, the config schema."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srcode.cli import TRAIN_PACKAGES, app

TINY_CPU = Path(__file__).resolve().parents[2] / "srcode" / "configs" / "tiny_cpu.yaml"


def test_doctor_lists_every_training_package() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    missing = [p for p in TRAIN_PACKAGES if importlib.util.find_spec(p) is None]
    assert result.exit_code == (1 if missing else 0)
    for package in TRAIN_PACKAGES:
        assert package in result.output
    for package in missing:
        assert f"{package:<13} missing" in result.output


@pytest.mark.parametrize(
    ("command", "override", "named"),
    [
        ("ppo", "model.path={missing}", "model.path"),
        ("ppo", "ppo.init_from={missing}", "ppo.init_from"),
        ("ppo", "model.path=no-such-org/no-such-model", "model.path"),
        ("sft", "model.path={missing}", "model.path"),
        ("sft", "model.path=no-such-org/no-such-model", "model.path"),
    ],
)
def test_missing_model_is_one_line_before_anything_is_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, override: str, named: str
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "runs" / "sft"
    out = tmp_path / "out"
    args = [command, str(TINY_CPU), "--output", str(out), "--set", override.format(missing=missing)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"srcode: error: {named}: ")
    assert "Traceback" not in result.output
    assert not out.exists()  # nothing built, not even the output folder (or tiny model)


@pytest.mark.parametrize("spelling", ["--output", "--output-dir", "-o"])
@pytest.mark.parametrize("command", ["ppo", "sft"])
def test_output_option_and_its_alias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, spelling: str
) -> None:
    """One option name across both CLIs (vul2safe uses --output); --output-dir stays."""
    import srcode.ppo
    import srcode.sft

    seen: dict[str, str] = {}

    def capture(config: object, *_: object) -> Path:
        seen["output_dir"] = getattr(config, command).output_dir
        return tmp_path

    monkeypatch.setattr(srcode.ppo, "run_ppo", capture)
    monkeypatch.setattr(srcode.sft, "run_sft", capture)
    target = tmp_path / "here"
    result = CliRunner().invoke(app, [command, str(TINY_CPU), spelling, str(target)])
    assert result.exit_code == 0, result.output
    assert seen["output_dir"] == str(target)


def test_schema_describes_every_key() -> None:
    result = CliRunner().invoke(app, ["schema"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    ppo = schema["$defs"]["PPORunConfig"]
    assert ppo["additionalProperties"] is False
    assert ppo["properties"]["advantage"]["enum"] == ["gae", "grpo", "rloo"]
    for section in ("ModelConfig", "DataConfig", "SFTRunConfig", "PPORunConfig"):
        for name, prop in schema["$defs"][section]["properties"].items():
            assert prop.get("description"), f"{section}.{name}"
    assert set(schema["properties"]) == {"model", "data", "sft", "ppo", "reward"}
