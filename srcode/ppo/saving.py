"""The loop around ``step_once``: metrics files, checkpoints, resume and the final model.

A mixin of :class:`srcode.ppo.trainer.PPOTrainer` (it uses the trainer's accelerator, model,
KL controller and rollout engine). Checkpoints (``accelerator.save_state``: weights incl. the
value head, optimizer, every process's RNG, the KL controller) live in
``OUTPUT_DIR/checkpoints/step-N``; ``resume_from: latest`` continues at step N+1 with the same
prompts and samples (bit-identical to an uninterrupted run on CPU).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from srcode.errors import ConfigError
from vul2safe.fileio import write_text_atomic


class CheckpointMixin:
    """``train()``, checkpoints and ``save_final()`` for the PPO trainer."""

    accelerator: Any
    config: Any
    run: Any
    model: Any
    kl_ctl: Any
    rollouts: Any
    tokenizer: Any
    rows: list[dict[str, Any]]
    output_dir: Path
    model_path: str
    step: int
    writer: Any

    def step_once(self) -> dict[str, float]:  # pragma: no cover - the trainer's
        raise NotImplementedError

    def train(self) -> Path:
        """Resume if asked, run until ``ppo.steps``, save the final model; return its dir."""
        acc, run = self.accelerator, self.run
        metrics_path = self.output_dir / "metrics.jsonl"
        if run.resume_from:
            self.load_checkpoint(self._checkpoint_to_resume())
            if acc.is_main_process and metrics_path.exists():  # drop steps we will redo
                kept = [m for m in iter_metrics(metrics_path) if m["step"] <= self.step]
                write_text_atomic(metrics_path, "".join(json.dumps(m) + "\n" for m in kept))
        elif acc.is_main_process:
            metrics_path.unlink(missing_ok=True)
        if acc.is_main_process and run.tensorboard:
            self.writer = _summary_writer(self.output_dir / "tensorboard", self.step + 1)
        try:
            while self.step < run.steps:
                metrics = self.step_once()
                if acc.is_main_process:
                    metrics["time"] = time.time()
                    with metrics_path.open("a", encoding="utf-8") as handle:
                        handle.write(json.dumps(metrics) + "\n")
                    if self.writer is not None:
                        for key, value in metrics.items():
                            if key not in {"step", "time"}:
                                self.writer.add_scalar(key, value, self.step)
                        self.writer.flush()
                    acc.print(_progress_line(metrics))
                if (run.save_every and self.step % run.save_every == 0) or self.step == run.steps:
                    self.save_checkpoint()
        finally:
            if self.writer is not None:
                self.writer.close()
            self.close_rollouts()
        return self.save_final()

    def close_rollouts(self) -> None:
        """Stop the rollout engine once the loop ends, however it ends: a vLLM engine frees
        its memory before the final save, and an in-process caller (a notebook, a sweep) is
        not left holding it. Engines without ``close`` (transformers) need nothing."""
        close = getattr(self.rollouts, "close", None)
        if close is not None:
            close()

    def checkpoint_dir(self, step: int) -> Path:
        return self.output_dir / "checkpoints" / f"step-{step:06d}"

    def save_checkpoint(self) -> Path:
        """Weights (policy + value head), optimizer, RNG of every process, β, step."""
        path = self.checkpoint_dir(self.step)
        self.accelerator.save_state(str(path))
        if self.accelerator.is_main_process:
            state = {"step": self.step, "kl_coef": self.kl_ctl.value, "model": self.model_path}
            write_text_atomic(path / "trainer_state.json", json.dumps(state, indent=2) + "\n")
        self.accelerator.wait_for_everyone()
        return path

    def _checkpoint_to_resume(self) -> Path:
        if self.run.resume_from != "latest":
            return Path(str(self.run.resume_from))
        found = sorted((self.output_dir / "checkpoints").glob("step-*/trainer_state.json"))
        if not found:
            raise ConfigError(
                f"ppo.resume_from: latest, but {self.output_dir}/checkpoints is empty"
            )
        return found[-1].parent

    def load_checkpoint(self, path: Path) -> None:
        state_file = path / "trainer_state.json"
        if not state_file.exists():
            raise ConfigError(f"ppo.resume_from: {path} is not a srcode PPO checkpoint")
        self.accelerator.load_state(str(path))
        self.step = int(json.loads(state_file.read_text())["step"])
        self.rollouts.sync_weights(self.accelerator.unwrap_model(self.model).policy)
        self.accelerator.print(f"resumed from {path} at step {self.step}")

    def save_final(self) -> Path:
        """A loadable model at OUTPUT_DIR (LoRA merged; adapters in adapter/), value head, card."""
        from safetensors.torch import save_file

        from srcode.sft import write_model_card

        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            unwrapped = acc.unwrap_model(self.model)
            policy = unwrapped.policy
            if self.config.model.lora:
                policy.save_pretrained(self.output_dir / "adapter")
                policy = policy.merge_and_unload()
            policy.save_pretrained(self.output_dir)
            self.tokenizer.save_pretrained(self.output_dir)
            head = {
                k: v.detach().cpu().contiguous()
                for k, v in unwrapped.value_head.state_dict().items()
            }
            save_file(head, str(self.output_dir / "value_head.safetensors"))
            write_model_card(
                self.output_dir,
                stage="ppo",
                base_model=self.model_path,
                config=self.config,
                data_rows=len(self.rows),
                metrics=_last_metrics(self.output_dir / "metrics.jsonl"),
            )
        acc.wait_for_everyone()
        return self.output_dir


def _summary_writer(path: Path, purge_step: int) -> Any:
    """TensorBoard writer, or None (with a note) when tensorboard is not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        print("srcode: tensorboard not installed; metrics go to metrics.jsonl only")
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(path), purge_step=purge_step)


def _progress_line(metrics: dict[str, float]) -> str:
    keys = ("reward/score_mean", "kl/mean", "kl/coef", "loss/policy", "loss/value", "time/step")
    shown = " ".join(f"{k}={metrics[k]:.4g}" for k in keys if k in metrics)
    return f"step {int(metrics['step'])}: {shown}"


def _last_metrics(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return json.loads(lines[-1]) if lines else {}


def iter_metrics(path: Path) -> Iterator[dict[str, Any]]:
    """Read a metrics.jsonl back (tests, notebooks)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            yield json.loads(line)
