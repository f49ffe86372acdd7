"""`srcode sft` on the tiny model: weights change, metrics are logged, the output is loadable."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from srcode.cli import app
from srcode.sft import to_trl_example

TINY_CPU = Path(__file__).resolve().parents[2] / "srcode" / "configs" / "tiny_cpu.yaml"


def run_cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exit_code != 0:
        raise AssertionError(f"srcode {' '.join(args)} failed:\n{result.output}") from (
            result.exception
        )
    return result.output


def test_sft_cli_trains_logs_and_saves(tmp_path: Path) -> None:
    out = tmp_path / "sft"
    output = run_cli("sft", str(TINY_CPU), "--output-dir", str(out))
    assert f"saved {out}" in output

    before = load_file(out / "tiny-model" / "model.safetensors")
    after = load_file(out / "model.safetensors")
    changed = [name for name in before if not torch.equal(before[name], after[name])]
    assert len(changed) == len(before), f"unchanged: {set(before) - set(changed)}"

    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [entry["loss"] for entry in logs if "loss" in entry]
    assert len(losses) >= 4 and all(math.isfinite(v) for v in losses)
    assert losses[-1] < losses[0]  # 8 steps at lr 1e-3 on 32 rows: the loss goes down
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))

    card = (out / "README.md").read_text()
    for needle in ("SRCode SFT model", "Base model", "safecoder:", "32 rows", "train_loss"):
        assert needle in card
    assert (out / "tokenizer.json").exists() and (out / "chat_template.jinja").exists()


def test_sft_with_lora_saves_adapter_and_merged_model(tmp_path: Path) -> None:
    out = tmp_path / "sft-lora"
    run_cli(
        "sft",
        str(TINY_CPU),
        "-o",
        str(out),
        "--set",
        "model.lora=true",
        "--set",
        "model.lora_r=4",
        "--set",
        "sft.max_steps=2",
    )
    assert (out / "adapter" / "adapter_config.json").exists()
    before = load_file(out / "tiny-model" / "model.safetensors")
    merged = load_file(out / "model.safetensors")
    assert before.keys() == merged.keys()  # a plain checkpoint, no LoRA names
    assert any(not torch.equal(before[k], merged[k]) for k in before)
    assert "lora" in (out / "README.md").read_text()


@pytest.mark.parametrize("chat", [True, False])
def test_rows_become_trl_prompt_completion(chat: bool) -> None:
    row = {"prompt": "Parse a config file.", "completion": "def parse(): ...", "language": "py"}
    example = to_trl_example(row, chat)
    if chat:
        assert example == {
            "prompt": [{"role": "user", "content": "Parse a config file."}],
            "completion": [{"role": "assistant", "content": "def parse(): ..."}],
        }
    else:
        assert example == {"prompt": "Parse a config file.\n", "completion": "def parse(): ..."}
