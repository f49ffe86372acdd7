"""SFT: teach the model to answer PrimeVul+ task prompts with the *secure* version of the code.

TRL's ``SFTTrainer`` does the work; this module only turns a :class:`SRCodeConfig` into its
arguments. Rows become TRL's prompt-completion format — conversational (``[{"role": "user",
...}]``) when the tokenizer has a chat template, so the loss covers exactly the assistant's
answer as the model will later be prompted in PPO and evaluation; plain text otherwise, with
the same ``PLAIN_PROMPT_SUFFIX`` PPO uses. Loss is on completion tokens only (TRL's default
for prompt-completion data).

The output directory ends up loadable by anything (``from_pretrained``, vLLM, ``vul2safe
eval``): weights (LoRA merged unless ``sft.merge_lora: false``), tokenizer, ``metrics.jsonl``,
``tensorboard/`` and a model card ``README.md`` naming base model, data, config and metrics.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

from srcode.config import (
    PLAIN_PROMPT_SUFFIX,
    TINY_MODEL,
    ModelConfig,
    SFTRunConfig,
    SRCodeConfig,
    config_to_dict,
)
from srcode.data import check_model_source, load_examples, resolve_model_path

CARD_TEMPLATE = """---
{{ card_data }}
---

# {{ title }}

{{ summary }}

- **Base model:** `{{ base_model }}`
- **Training data:** `{{ data_source }}` ({{ data_rows }} rows{{ languages }})
- **Stage:** {{ stage }} (`srcode {{ stage }}`), LoRA: {{ lora }}

## Metrics

| metric | value |
|---|---|
{% for key, value in metrics.items() -%}
| {{ key }} | {{ value }} |
{% endfor %}

## Configuration

```yaml
{{ config_yaml }}```

Trained with [vul2safe / srcode](https://arxiv.org/abs/2602.23407)-style token-level-reward
training. The weights are only as secure as the scanners and data behind them: evaluate with
`vul2safe eval` before use.
"""


def write_model_card(
    output_dir: Path,
    *,
    stage: str,
    base_model: str,
    config: SRCodeConfig,
    data_rows: int,
    metrics: dict[str, Any],
) -> Path:
    """Render README.md from a Jinja template (huggingface_hub's ModelCard), as TRL does."""
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    tags = ["srcode", "secure-code", stage, *(["lora"] if config.model.lora else [])]
    card_data = ModelCardData(
        base_model=None if base_model.startswith(("/", ".")) else base_model,
        library_name="transformers",
        tags=tags,
        pipeline_tag="text-generation",
    )
    shown = config_to_dict(config)
    shown.pop("source_path", None)
    card = ModelCard.from_template(
        card_data,
        template_str=CARD_TEMPLATE,
        title=f"SRCode {stage.upper()} model",
        summary=(
            "Supervised fine-tuning on prompt → secure code repair pairs."
            if stage == "sft"
            else "PPO with token-level security rewards (SRCode)."
        ),
        base_model=base_model,
        data_source=config.data.source,
        data_rows=data_rows,
        languages=f"; {', '.join(config.data.languages)}" if config.data.languages else "",
        stage=stage,
        lora=config.model.lora,
        metrics={k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in metrics.items()},
        config_yaml=yaml.safe_dump(shown, sort_keys=False),
    )
    path = output_dir / "README.md"
    card.save(path)
    return path


def load_tokenizer(path: str, model: ModelConfig) -> Any:
    """Tokenizer with a pad token (left padding: generation pads prompts on the left)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(
        path, revision=model.revision, trust_remote_code=model.trust_remote_code
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_causal_lm(path: str, model: ModelConfig) -> Any:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {
        "revision": model.revision,
        "trust_remote_code": model.trust_remote_code,
        "dtype": model.dtype,
    }
    if model.attn_implementation:
        kwargs["attn_implementation"] = model.attn_implementation
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def lora_config(model: ModelConfig, dropout: float | None = None) -> Any:
    from peft import LoraConfig

    targets = model.lora_target_modules
    return LoraConfig(
        r=model.lora_r,
        lora_alpha=model.lora_alpha,
        lora_dropout=model.lora_dropout if dropout is None else dropout,
        target_modules=targets[0] if targets == ["all-linear"] else targets,
        task_type="CAUSAL_LM",
    )


def to_trl_example(row: dict[str, Any], chat: bool) -> dict[str, Any]:
    """One row in TRL's prompt-completion format (conversational when the model chats)."""
    if chat:
        return {
            "prompt": [{"role": "user", "content": row["prompt"]}],
            "completion": [{"role": "assistant", "content": row["completion"]}],
        }
    return {"prompt": row["prompt"] + PLAIN_PROMPT_SUFFIX, "completion": row["completion"]}


def _callbacks(output_dir: Path, tensorboard: bool) -> list[Any]:
    """JSONL metrics always; TensorBoard events when the package is there."""
    import importlib.util

    from transformers import TrainerCallback

    class JsonlMetrics(TrainerCallback):  # type: ignore[misc]
        """Append every log dict (loss, learning rate, ...) to metrics.jsonl."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if not state.is_world_process_zero or not logs:
                return
            record = {"step": state.global_step, "time": time.time(), **logs}
            with (output_dir / "metrics.jsonl").open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")

    callbacks: list[Any] = [JsonlMetrics()]
    if tensorboard and importlib.util.find_spec("tensorboard") is not None:
        from torch.utils.tensorboard import SummaryWriter
        from transformers.integrations import TensorBoardCallback

        writer = SummaryWriter(log_dir=str(output_dir / "tensorboard"))
        callbacks.append(TensorBoardCallback(tb_writer=writer))
    return callbacks


def _version_dependent_args(config_cls: type, run: SFTRunConfig) -> dict[str, Any]:
    """transformers 5 renamed these; pass the spelling the installed version knows."""
    names = {f.name for f in dataclasses.fields(config_cls)}  # TRL's configs are dataclasses
    args: dict[str, Any] = {}
    if "activation_checkpointing" in names:
        args["activation_checkpointing"] = run.gradient_checkpointing
    else:
        args["gradient_checkpointing"] = run.gradient_checkpointing
    if "warmup_ratio" in names:  # transformers 4.x
        args["warmup_ratio"] = run.warmup_ratio
    else:  # transformers 5: a float below 1 is a ratio of all steps
        args["warmup_steps"] = run.warmup_ratio
    return args


def run_sft(config: SRCodeConfig) -> Path:
    """Fine-tune ``config.model`` on ``config.data``'s sft rows; return the output directory."""
    check_model_source(config.model.path, config.model.revision, "model.path")
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    run = config.sft
    output_dir = Path(run.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "metrics.jsonl").unlink(missing_ok=True)
    set_seed(run.seed)

    with PartialState().main_process_first():  # tiny:// is built once, by the main process
        model_path = resolve_model_path(config.model, output_dir)
    tokenizer = load_tokenizer(model_path, config.model)
    chat = tokenizer.chat_template is not None
    rows = load_examples(config.data, "sft", config.source_path)
    dataset = Dataset.from_list([to_trl_example(row, chat) for row in rows])

    args = SFTConfig(
        **_version_dependent_args(SFTConfig, run),
        output_dir=str(output_dir),
        seed=run.seed,
        num_train_epochs=run.epochs,
        max_steps=run.max_steps,
        per_device_train_batch_size=run.batch_size,
        gradient_accumulation_steps=run.gradient_accumulation_steps,
        learning_rate=run.learning_rate,
        lr_scheduler_type=run.lr_scheduler,
        weight_decay=run.weight_decay,
        max_length=run.max_length,
        bf16=run.mixed_precision == "bf16",
        fp16=run.mixed_precision == "fp16",
        logging_steps=run.logging_steps,
        logging_first_step=True,
        save_strategy="no",  # the final model is saved below, in a loadable layout
        report_to="none",  # our callbacks write metrics.jsonl and tensorboard/
        disable_tqdm=True,
        dataloader_pin_memory=torch.cuda.is_available(),
        dataset_num_proc=None,
    )
    trainer = SFTTrainer(
        model=load_causal_lm(model_path, config.model),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=lora_config(config.model) if config.model.lora else None,
        callbacks=_callbacks(output_dir, run.tensorboard),
    )
    result = trainer.train()
    if not trainer.is_world_process_zero():  # under accelerate launch, one process saves
        return output_dir

    model: Any = trainer.model  # a PreTrainedModel, or a PeftModel with LoRA
    if config.model.lora and run.merge_lora:
        model.save_pretrained(output_dir / "adapter")
        model.merge_and_unload().save_pretrained(output_dir)
    else:  # full weights, or an adapter directory transformers loads through peft
        model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)

    metrics = {
        "train_loss": result.training_loss,
        "global_steps": result.global_step,
        **{k: v for k, v in result.metrics.items() if isinstance(v, int | float)},
        "rows": len(rows),
    }
    (output_dir / "train_results.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_model_card(
        output_dir,
        stage="sft",
        base_model=model_path if config.model.path == TINY_MODEL else config.model.path,
        config=config,
        data_rows=len(rows),
        metrics=metrics,
    )
    return output_dir
