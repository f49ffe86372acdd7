"""srcode's YAML configs: every field documented, unknown keys rejected in one clear line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from srcode.cli import app
from srcode.config import (
    ConfigError,
    DataConfig,
    ModelConfig,
    PPORunConfig,
    RewardSection,
    SFTRunConfig,
    SRCodeConfig,
    load_config,
    validate_ppo,
)
from srcode.data import load_examples

CONFIGS = Path(__file__).resolve().parents[2] / "srcode" / "configs"
SECTIONS = (ModelConfig, DataConfig, SFTRunConfig, PPORunConfig, RewardSection, SRCodeConfig)


@pytest.mark.parametrize("cls", SECTIONS, ids=lambda c: c.__name__)
def test_every_field_has_help(cls: type) -> None:
    for name, info in cls.model_fields.items():
        assert (info.description or "").strip(), f"{cls.__name__}.{name} has no help"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    validate_ppo(config.ppo)
    assert config.source_path == str(path.resolve())


def test_tiny_cpu_values_reach_the_dataclasses() -> None:
    config = load_config(CONFIGS / "tiny_cpu.yaml")
    assert config.model.path == "tiny://"
    assert config.data.languages == ["python"]
    assert config.ppo.clip_mode == "hard"
    assert config.ppo.learning_rate == pytest.approx(1e-3)  # YAML 1.0e-3, a float
    assert config.reward.options == {"granularity": "token", "scanners": ["bandit"]}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_the_key_and_the_valid_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "ppo:\n  clip_mod: soft\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert "ppo.clip_mod: unknown key" in message
    assert "did you mean 'clip_mode'" in message
    assert "valid keys: output_dir, init_from" in message


def test_unknown_section_and_unknown_reward_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pp: unknown key \(did you mean 'ppo'\?\)"):
        load_config(write(tmp_path, "pp:\n  steps: 1\n"))
    with pytest.raises(ConfigError, match=r"reward\.granularty: unknown key.*'granularity'"):
        load_config(write(tmp_path, "reward:\n  granularty: token\n"))
    with pytest.raises(ConfigError, match=re.escape("ppo.init_kl_coef")):
        load_config(write(tmp_path, "reward:\n  kl_coef: 0.1\n"))


def test_types_and_choices_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape("ppo.steps: expected an integer, got 'many'")):
        load_config(write(tmp_path, "ppo:\n  steps: many\n"))
    with pytest.raises(
        ConfigError, match=re.escape("ppo.clip_mode: 'gentle' is not one of hard, soft")
    ):
        load_config(write(tmp_path, "ppo:\n  clip_mode: gentle\n"))
    with pytest.raises(ConfigError, match=re.escape("model.lora: expected true or false")):
        load_config(write(tmp_path, "model:\n  lora: 1\n"))
    config = load_config(write(tmp_path, "ppo:\n  cliprange: 1\n"))
    assert config.ppo.cliprange == 1.0 and isinstance(config.ppo.cliprange, float)


def test_set_overrides_beat_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "ppo:\n  steps: 5\n  clip_mode: hard\n")
    config = load_config(path, ["ppo.steps=9", "ppo.clip_mode=soft", "data.languages=[c, cpp]"])
    assert (config.ppo.steps, config.ppo.clip_mode) == (9, "soft")
    assert config.data.languages == ["c", "cpp"]
    with pytest.raises(ConfigError, match=re.escape("ppo.stepz: unknown key")):
        load_config(path, ["ppo.stepz=1"])


def test_batch_arithmetic_is_validated() -> None:
    with pytest.raises(ConfigError, match=re.escape("must divide ppo.rollout_batch_size")):
        validate_ppo(PPORunConfig(rollout_batch_size=10, mini_batch_size=4))
    with pytest.raises(ConfigError, match="gradient_accumulation_steps"):
        validate_ppo(PPORunConfig(mini_batch_size=4, gradient_accumulation_steps=3))


def test_ppo_combinations_are_validated() -> None:
    with pytest.raises(ConfigError, match=re.escape("set ppo.samples_per_prompt to 2 or more")):
        validate_ppo(PPORunConfig(advantage="grpo"))
    with pytest.raises(
        ConfigError, match=re.escape("samples_per_prompt (3) must be at least 1 and divide")
    ):
        validate_ppo(PPORunConfig(advantage="rloo", samples_per_prompt=3))
    with pytest.raises(ConfigError, match="dual_clip must be above 1"):
        validate_ppo(PPORunConfig(dual_clip=0.5))
    with pytest.raises(ConfigError, match="clip_mode: hard only"):
        validate_ppo(PPORunConfig(dual_clip=3.0, clip_mode="soft"))
    validate_ppo(PPORunConfig(advantage="grpo", samples_per_prompt=4, dual_clip=3.0))


def test_critic_free_keys_and_kl_choices(tmp_path: Path) -> None:
    text = "ppo:\n  advantage: rloo\n  samples_per_prompt: 4\n  kl_estimator: k3\n"
    config = load_config(write(tmp_path, text + "  kl_penalty: loss\n"))
    assert (config.ppo.advantage, config.ppo.samples_per_prompt) == ("rloo", 4)
    assert (config.ppo.kl_estimator, config.ppo.kl_penalty) == ("k3", "loss")
    with pytest.raises(ConfigError, match=re.escape("ppo.advantage: 'ppo' is not one of gae")):
        load_config(write(tmp_path, "ppo:\n  advantage: ppo\n"))


def test_exponent_floats_without_a_dot_are_numbers(tmp_path: Path) -> None:
    """YAML 1.1 reads 1e-4 as a string; Python writes 5e-05: both are learning rates."""
    config = load_config(
        write(tmp_path, "ppo:\n  learning_rate: 1e-4\n"), ["sft.learning_rate=5e-05"]
    )
    assert config.ppo.learning_rate == pytest.approx(1e-4)
    assert config.sft.learning_rate == pytest.approx(5e-5)


def test_empty_section_means_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "model:\nppo:\n  steps: 2\n"))
    assert config.model.path == "tiny://" and config.ppo.steps == 2


def test_cli_reports_a_config_error_in_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "sft:\n  epochz: 2\n")
    result = CliRunner().invoke(app, ["sft", str(path)])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1
    assert lines[0].startswith("srcode: error: ")
    assert "sft.epochz: unknown key (did you mean 'epochs'?)" in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["ppo", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "config file not found" in result.output


def test_safecoder_rows(shared_data: Path) -> None:
    source = f"safecoder:{shared_data / 'safecoder' / 'sec-new-desc-train.jsonl'}"
    data = DataConfig(source=source, languages=["python"], max_samples=5)
    sft = load_examples(data, "sft")
    rl = load_examples(data, "rl")
    assert len(sft) == len(rl) == 5
    assert set(sft[0]) == {"prompt", "completion", "language"}
    for row in rl:
        assert row["language"] == "python"
        assert row["prompt"] and row["reference"] != row["vulnerable"]
        for start, end in row["secure_spans"]:
            assert 0 <= start <= end <= len(row["reference"])
        for start, end in row["vulnerable_spans"]:
            assert 0 <= start <= end <= len(row["vulnerable"])
    # the same seed gives the same rows, so SFT and PPO runs are reproducible
    assert [r["prompt"] for r in load_examples(data, "rl")] == [r["prompt"] for r in rl]


def test_sven_rows_get_a_prompt_without_the_weakness(shared_data: Path) -> None:
    data = DataConfig(source=f"sven:{shared_data / 'sven' / 'train'}", max_samples=20)
    rows = load_examples(data, "rl")
    assert len(rows) == 20
    for row in rows:
        assert row["prompt"].startswith(f"Write the {row['language']} function")
        assert "CWE" not in row["prompt"]
        assert row["cwe"][0].startswith("CWE-")


def test_config_defaults_build() -> None:
    config = SRCodeConfig()
    assert config.ppo.clip_mode == "hard" and config.model.lora is False
