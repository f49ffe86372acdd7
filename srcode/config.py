"""SRCode run configuration: dataclasses in TRL's style, loaded from small named YAML files.

One YAML file describes a whole SRCode run; each command reads the sections it needs::

    model:  {path, revision, dtype, lora, lora_r, ...}      # ModelConfig
    data:   {source, max_samples, languages, ...}            # DataConfig
    sft:    {output_dir, epochs, learning_rate, ...}         # SFTRunConfig  (srcode sft)
    ppo:    {output_dir, steps, cliprange, clip_mode, ...}   # PPORunConfig  (srcode ppo)
    reward: {...}                                            # RewardSection (srcode.rewards)

Every field carries a ``help`` (``dataclasses.fields(cls)[i].metadata["help"]``), the way
TRL's ``SFTConfig`` documents itself. Unknown keys are an error that names the key and the
valid ones, because a misspelt ``clip_mod: soft`` silently training with hard clipping would
cost a GPU-day. Precedence: ``--set key=value`` flags > the YAML file > these defaults.

This module also resolves ``DataConfig.source`` into rows (``load_examples``) and holds the
one prompt format SFT and PPO share (``PLAIN_PROMPT_SUFFIX``), so the policy is trained and
sampled on the same text.
"""

from __future__ import annotations

import ast
import difflib
import json
import random
import types
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from vul2safe.errors import UsageError

#: ``model.path`` value meaning "build vul2safe's tiny random model into the run's output_dir".
TINY_MODEL = "tiny://"

#: appended to the task prompt when the tokenizer has no chat template (SFT and PPO alike)
PLAIN_PROMPT_SUFFIX = "\n"


class ConfigError(UsageError):
    """A YAML config or ``--set`` override that does not fit the schema."""


def _help(text: str, **extra: Any) -> dict[str, Any]:
    return {"help": text, **extra}


@dataclass
class ModelConfig:
    """Which model to start from and whether to train it through LoRA."""

    path: str = field(
        default=TINY_MODEL,
        metadata=_help(
            "Hugging Face model id or local directory. 'tiny://' builds vul2safe's tiny random "
            "Llama (vul2safe.testing.tiny_model) into OUTPUT_DIR/tiny-model: for CPU smoke runs."
        ),
    )
    revision: str | None = field(
        default=None, metadata=_help("Hub revision (branch, tag or commit) of `path`.")
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="float32",
        metadata=_help("Weights dtype when loading; 'auto' takes the checkpoint's own."),
    )
    trust_remote_code: bool = field(
        default=False, metadata=_help("Allow model repositories that ship their own code.")
    )
    attn_implementation: str | None = field(
        default=None,
        metadata=_help("Attention kernel ('sdpa', 'flash_attention_2', 'eager'); None = default."),
    )
    lora: bool = field(
        default=False,
        metadata=_help(
            "Train LoRA adapters instead of all weights. In PPO the reference model is then the "
            "same network with the adapters disabled (no second copy in memory)."
        ),
    )
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling numerator (alpha / r)."))
    lora_dropout: float = field(
        default=0.05, metadata=_help("LoRA dropout (SFT only: PPO runs without dropout).")
    )
    lora_target_modules: list[str] = field(
        default_factory=lambda: ["all-linear"],
        metadata=_help("Modules that get adapters; ['all-linear'] = every linear but the head."),
    )


@dataclass
class DataConfig:
    """Where the training rows come from."""

    source: str = field(
        default="safecoder:../shared/data/safecoder/sec-new-desc-train.jsonl",
        metadata=_help(
            "A PrimeVul+ dataset (local `save_to_disk`/Parquet directory or Hub id) with configs "
            "`sft` (prompt, completion, language) and `rl` (prompt, reference, vulnerable, "
            "vulnerable_spans, secure_spans, language); or 'safecoder:PATH' (SafeCoder JSONL) or "
            "'sven:PATH' (SVEN directory or JSONL) read directly. A relative path is taken "
            "beside the config file when it exists there, else from the current directory."
        ),
    )
    split: str = field(default="train", metadata=_help("Dataset split to train on."))
    revision: str | None = field(default=None, metadata=_help("Hub revision of the dataset."))
    languages: list[str] = field(
        default_factory=list,
        metadata=_help("Keep only these languages (vul2safe spelling: python, c, ...); [] = all."),
    )
    max_samples: int | None = field(
        default=None, metadata=_help("Use at most this many rows (after filtering); None = all.")
    )
    shuffle_seed: int | None = field(
        default=0,
        metadata=_help("Shuffle rows with this seed before `max_samples`; None keeps file order."),
    )


@dataclass
class SFTRunConfig:
    """Supervised fine-tuning on prompt → secure code (TRL's SFTTrainer)."""

    output_dir: str = field(
        default="runs/sft", metadata=_help("Where the model, tokenizer, card and logs go.")
    )
    seed: int = field(default=0, metadata=_help("Seed for data order and initialisation."))
    epochs: float = field(default=1.0, metadata=_help("Passes over the data."))
    max_steps: int = field(
        default=-1, metadata=_help("Stop after this many optimizer steps; -1 = use `epochs`.")
    )
    batch_size: int = field(default=8, metadata=_help("Sequences per device per micro-batch."))
    gradient_accumulation_steps: int = field(
        default=1, metadata=_help("Micro-batches per optimizer step.")
    )
    learning_rate: float = field(default=2e-5, metadata=_help("Peak AdamW learning rate."))
    lr_scheduler: str = field(
        default="cosine", metadata=_help("transformers scheduler name (linear, cosine, ...).")
    )
    warmup_ratio: float = field(
        default=0.03, metadata=_help("Fraction of the steps spent warming the learning rate up.")
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    max_length: int = field(
        default=1024, metadata=_help("Truncate prompt+completion to this many tokens.")
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = field(
        default="no", metadata=_help("Autocast precision for training.")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Trade compute for memory on large models.")
    )
    logging_steps: int = field(default=10, metadata=_help("Log metrics every N optimizer steps."))
    tensorboard: bool = field(
        default=True,
        metadata=_help("Also write TensorBoard events to OUTPUT_DIR/tensorboard (if installed)."),
    )
    merge_lora: bool = field(
        default=True,
        metadata=_help(
            "With LoRA, save the merged full model at OUTPUT_DIR (adapters in OUTPUT_DIR/adapter) "
            "so PPO and `vul2safe eval` load it like any checkpoint."
        ),
    )


@dataclass
class PPORunConfig:
    """PPO with token-level rewards (srcode/ppo.py)."""

    output_dir: str = field(
        default="runs/ppo", metadata=_help("Checkpoints, final model, metrics.jsonl, tensorboard/.")
    )
    init_from: str | None = field(
        default=None,
        metadata=_help(
            "Start the policy (and reference) from this checkpoint, e.g. the SFT output_dir; "
            "None = `model.path`."
        ),
    )
    seed: int = field(default=0, metadata=_help("Seed for prompt order, sampling, value head."))
    steps: int = field(default=100, metadata=_help("PPO iterations (rollout batch + update)."))
    rollout_batch_size: int = field(
        default=64, metadata=_help("Prompts sampled per iteration, per process.")
    )
    mini_batch_size: int = field(
        default=16, metadata=_help("Rollouts per optimizer step; divides rollout_batch_size.")
    )
    gradient_accumulation_steps: int = field(
        default=1,
        metadata=_help("Micro-batches per mini-batch (micro = mini_batch_size / this)."),
    )
    ppo_epochs: int = field(default=4, metadata=_help("Passes over each rollout batch."))
    learning_rate: float = field(
        default=1e-6, metadata=_help("AdamW learning rate (policy and value head).")
    )
    weight_decay: float = field(default=0.0, metadata=_help("AdamW weight decay."))
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient-norm clip per step."))
    max_prompt_length: int = field(
        default=512, metadata=_help("Prompt tokens kept (left-truncated) for generation.")
    )
    max_new_tokens: int = field(default=512, metadata=_help("Longest response sampled."))
    temperature: float = field(
        default=1.0,
        metadata=_help("Sampling temperature; logprobs are taken at the same temperature."),
    )
    top_p: float = field(default=1.0, metadata=_help("Nucleus sampling mass."))
    gamma: float = field(default=1.0, metadata=_help("Discount factor over response tokens."))
    lam: float = field(default=0.95, metadata=_help("GAE lambda (bias/variance trade-off)."))
    cliprange: float = field(
        default=0.2, metadata=_help("PPO ratio clip ε: hard clip to [1-ε, 1+ε].")
    )
    cliprange_value: float = field(
        default=0.2, metadata=_help("Value clip: new values stay within ± this of the old ones.")
    )
    vf_coef: float = field(default=0.1, metadata=_help("Weight of the value loss."))
    clip_mode: Literal["hard", "soft"] = field(
        default="hard",
        metadata=_help(
            "'hard' = PPO's clipped surrogate. 'soft' = sigmoid-gated surrogate "
            "-(4/τ)·σ(τ(r-1))·A: gradients fade smoothly as the ratio leaves 1 instead of "
            "vanishing at 1±ε, so sparse token-level signals are not muted (srcode/ppo.py)."
        ),
    )
    soft_clip_tau: float = field(
        default=10.0,
        metadata=_help(
            "τ of the soft clip for positive advantages; the gradient weight halves at "
            "|r-1| = 1.763/τ (0.176 for τ=10, close to ε=0.2)."
        ),
    )
    soft_clip_tau_neg: float | None = field(
        default=None,
        metadata=_help("τ for negative advantages (larger = stricter); None = soft_clip_tau."),
    )
    kl_control: Literal["fixed", "adaptive"] = field(
        default="adaptive",
        metadata=_help("'fixed' keeps init_kl_coef; 'adaptive' steers the KL to kl_target."),
    )
    init_kl_coef: float = field(default=0.05, metadata=_help("β of the per-token KL penalty."))
    kl_target: float = field(
        default=6.0, metadata=_help("Adaptive control: target KL (nats per response).")
    )
    kl_horizon: int = field(
        default=10000, metadata=_help("Adaptive control: rollouts over which β adapts.")
    )
    whiten_advantages: bool = field(
        default=True, metadata=_help("Normalise advantages to zero mean / unit variance.")
    )
    whiten_rewards: bool = field(
        default=False, metadata=_help("Scale rewards to unit variance before GAE.")
    )
    save_every: int = field(
        default=50, metadata=_help("Checkpoint every N steps (and always at the end); 0 = end.")
    )
    resume_from: str | None = field(
        default=None,
        metadata=_help("'latest' or a checkpoint directory to continue from; None = fresh."),
    )
    tensorboard: bool = field(
        default=True,
        metadata=_help(
            "Write TensorBoard events to OUTPUT_DIR/tensorboard (metrics.jsonl always)."
        ),
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = field(
        default="no", metadata=_help("Accelerate mixed precision for the update.")
    )
    gradient_checkpointing: bool = field(
        default=False, metadata=_help("Trade compute for memory on large models.")
    )
    rollout_backend: Literal["transformers", "vllm"] = field(
        default="transformers",
        metadata=_help(
            "'transformers' = model.generate on the policy itself; 'vllm' = a colocated vLLM "
            "engine per process whose weights are refreshed after every update."
        ),
    )
    vllm_gpu_memory_utilization: float = field(
        default=0.3, metadata=_help("GPU memory fraction the colocated vLLM engine may take.")
    )


@dataclass
class RewardSection:
    """The ``reward:`` mapping, handed unchanged to srcode.rewards (which validates it)."""

    options: dict[str, Any] = field(
        default_factory=dict,
        metadata=_help("Keys of srcode.rewards' own config (granularity, scanners, weights, ...)."),
    )


@dataclass
class SRCodeConfig:
    """A whole SRCode run: one YAML file, one section per dataclass."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata=_help("Model section."))
    data: DataConfig = field(default_factory=DataConfig, metadata=_help("Data section."))
    sft: SFTRunConfig = field(default_factory=SFTRunConfig, metadata=_help("SFT section."))
    ppo: PPORunConfig = field(default_factory=PPORunConfig, metadata=_help("PPO section."))
    reward: RewardSection = field(
        default_factory=RewardSection, metadata=_help("Reward section (srcode.rewards).")
    )
    source_path: str | None = field(
        default=None, metadata=_help("The YAML file this was read from (set by load_config).")
    )


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: list[str] | None = None) -> SRCodeConfig:
    """Read a YAML config; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    raw.pop("source_path", None)
    for override in overrides or []:
        _apply_override(raw, override)
    reward = raw.pop("reward", None) or {}
    if not isinstance(reward, dict):
        raise ConfigError(f"{path}: reward: expected a mapping")
    config = _build(SRCodeConfig, raw, where=f"{path}: ")
    check_reward_section(reward, where=f"{path}: ")
    config.reward = RewardSection(options=reward)
    config.source_path = str(path.resolve())
    return config


#: ``reward:`` keys that configure the scorer rather than srcode.rewards.RewardConfig
REWARD_SCORER_KEYS = ("scanners", "mode")


def check_reward_section(options: dict[str, Any], where: str = "") -> None:
    """Reject unknown ``reward:`` keys now, not after the model has loaded.

    Valid: srcode.rewards.RewardConfig's fields but ``kl_coef`` (PPO owns β:
    ``ppo.init_kl_coef`` and its controller), plus ``scanners`` and ``mode``.
    """
    from srcode.rewards import RewardConfig

    valid = [f.name for f in fields(RewardConfig) if f.name != "kl_coef"]
    valid += REWARD_SCORER_KEYS
    for key in options:
        if key == "kl_coef":
            raise ConfigError(f"{where}reward.kl_coef: PPO's β is ppo.init_kl_coef; remove it here")
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{where}reward.{key}: unknown key{hint}; valid keys: {', '.join(valid)}"
            )


def _apply_override(raw: dict[str, Any], override: str) -> None:
    import yaml

    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected SECTION.KEY=VALUE")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(value) if value.strip() else None


def _build(cls: type, data: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip(': ')}: expected a mapping, got {type(data).__name__}")
    hints = get_type_hints(cls)
    known = [f.name for f in fields(cls) if f.name != "source_path"]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}{key}: unknown key{hint}; valid keys: {', '.join(known)}")
        kwargs[key] = _coerce(hints[key], value, f"{where}{key}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    if isinstance(hint, type) and is_dataclass(hint):
        return _build(hint, value or {}, where=f"{where}.")
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin is Literal:
        choices = get_args(hint)
        if value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = get_args(hint)
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if hint is Any:
        return value
    raise ConfigError(f"{where}: unsupported type {hint!r}")  # a schema bug, named anyway


def config_to_dict(config: Any) -> dict[str, Any]:
    """The dataclass tree as plain data (for model cards and run records)."""
    if isinstance(config, RewardSection):
        return dict(config.options)  # shown as written in the YAML
    out: dict[str, Any] = {}
    for f in fields(config):
        value = getattr(config, f.name)
        out[f.name] = config_to_dict(value) if is_dataclass(value) else value
    return out


def field_defaults(cls: type) -> dict[str, Any]:
    """Defaults of a config dataclass (docs and tests)."""
    out = {}
    for f in fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def validate_ppo(ppo: PPORunConfig) -> None:
    """Batch arithmetic that must hold before a GPU is touched."""
    if ppo.rollout_batch_size % ppo.mini_batch_size:
        raise ConfigError(
            f"ppo.mini_batch_size ({ppo.mini_batch_size}) must divide "
            f"ppo.rollout_batch_size ({ppo.rollout_batch_size})"
        )
    if ppo.mini_batch_size % ppo.gradient_accumulation_steps:
        raise ConfigError(
            f"ppo.gradient_accumulation_steps ({ppo.gradient_accumulation_steps}) must divide "
            f"ppo.mini_batch_size ({ppo.mini_batch_size})"
        )
    if ppo.steps < 1 or ppo.ppo_epochs < 1:
        raise ConfigError("ppo.steps and ppo.ppo_epochs must be at least 1")


# --------------------------------------------------------------------------- data


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
