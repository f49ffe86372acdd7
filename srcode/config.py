"""SRCode run configuration: pydantic models, loaded from small named YAML files.

One YAML file describes a whole SRCode run; each command reads the sections it needs::

    model:  {path, revision, dtype, lora, lora_r, ...}      # ModelConfig
    data:   {source, max_samples, languages, ...}            # DataConfig
    sft:    {output_dir, epochs, learning_rate, ...}         # SFTRunConfig  (srcode sft)
    ppo:    {output_dir, steps, advantage, clip_mode, ...}   # PPORunConfig  (srcode/ppo_config.py)
    reward: {...}                                            # RewardSection (srcode.rewards)

Every field carries a ``description`` (``Model.model_fields[name].description``), and
``SRCodeConfig.model_json_schema()`` (``srcode schema``) gives the JSON schema editors and
tools validate against. Models are strict and forbid extra keys: an unknown key is an error
that names the key and the valid ones, because a misspelt ``clip_mod: soft`` silently training
with hard clipping would cost a GPU-day; pydantic's errors are rewritten as one line each
(``_one_line``). Precedence: ``--set key=value`` flags > the YAML file > these defaults.
Cross-field PPO checks live in :func:`srcode.ppo_config.validate_ppo` (run before any model
loads); the rows a config names are read by :mod:`srcode.data`.
"""

from __future__ import annotations

import difflib
import functools
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from srcode.errors import ConfigError
from srcode.ppo_config import PPORunConfig, validate_ppo

__all__ = [
    "PLAIN_PROMPT_SUFFIX",
    "TINY_MODEL",
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "PPORunConfig",
    "RewardSection",
    "SFTRunConfig",
    "SRCodeConfig",
    "check_reward_section",
    "config_to_dict",
    "field_defaults",
    "load_config",
    "validate_ppo",
]

#: ``model.path`` value meaning "build vul2safe's tiny random model into the run's output_dir".
TINY_MODEL = "tiny://"

#: appended to the task prompt when the tokenizer has no chat template (SFT and PPO alike)
PLAIN_PROMPT_SUFFIX = "\n"

STRICT = ConfigDict(extra="forbid", strict=True)


class ModelConfig(BaseModel):
    """Which model to start from and whether to train it through LoRA."""

    model_config = STRICT

    path: str = Field(
        default=TINY_MODEL,
        description=(
            "Hugging Face model id or local directory. 'tiny://' builds vul2safe's tiny random "
            "Llama (vul2safe.testing.tiny_model) into OUTPUT_DIR/tiny-model: for CPU smoke runs."
        ),
    )
    revision: str | None = Field(
        default=None, description="Hub revision (branch, tag or commit) of `path`."
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="float32",
        description="Weights dtype when loading; 'auto' takes the checkpoint's own.",
    )
    trust_remote_code: bool = Field(
        default=False, description="Allow model repositories that ship their own code."
    )
    attn_implementation: str | None = Field(
        default=None,
        description="Attention kernel ('sdpa', 'flash_attention_2', 'eager'); None = default.",
    )
    lora: bool = Field(
        default=False,
        description=(
            "Train LoRA adapters instead of all weights. In PPO the reference model is then the "
            "same network with the adapters disabled (no second copy in memory)."
        ),
    )
    lora_r: int = Field(default=16, description="LoRA rank.")
    lora_alpha: int = Field(default=32, description="LoRA scaling numerator (alpha / r).")
    lora_dropout: float = Field(
        default=0.05, description="LoRA dropout (SFT only: PPO runs without dropout)."
    )
    lora_target_modules: list[str] = Field(
        default_factory=lambda: ["all-linear"],
        description="Modules that get adapters; ['all-linear'] = every linear but the head.",
    )


class DataConfig(BaseModel):
    """Where the training rows come from (read by srcode.data.load_examples)."""

    model_config = STRICT

    source: str = Field(
        default="safecoder:../shared/data/safecoder/sec-new-desc-train.jsonl",
        description=(
            "A PrimeVul+ dataset (local `save_to_disk`/Parquet directory or Hub id) with configs "
            "`sft` (prompt, completion, language) and `rl` (prompt, reference, vulnerable, "
            "vulnerable_spans, secure_spans, language); or 'safecoder:PATH' (SafeCoder JSONL) or "
            "'sven:PATH' (SVEN directory or JSONL) read directly. A relative path is taken "
            "beside the config file when it exists there, else from the current directory."
        ),
    )
    split: str = Field(default="train", description="Dataset split to train on.")
    revision: str | None = Field(default=None, description="Hub revision of the dataset.")
    languages: list[str] = Field(
        default_factory=list,
        description="Keep only these languages (vul2safe spelling: python, c, ...); [] = all.",
    )
    max_samples: int | None = Field(
        default=None, description="Use at most this many rows (after filtering); None = all."
    )
    shuffle_seed: int | None = Field(
        default=0,
        description="Shuffle rows with this seed before `max_samples`; None keeps file order.",
    )


class SFTRunConfig(BaseModel):
    """Supervised fine-tuning on prompt → secure code (TRL's SFTTrainer)."""

    model_config = STRICT

    output_dir: str = Field(
        default="runs/sft", description="Where the model, tokenizer, card and logs go."
    )
    seed: int = Field(default=0, description="Seed for data order and initialisation.")
    epochs: float = Field(default=1.0, description="Passes over the data.")
    max_steps: int = Field(
        default=-1, description="Stop after this many optimizer steps; -1 = use `epochs`."
    )
    batch_size: int = Field(default=8, description="Sequences per device per micro-batch.")
    gradient_accumulation_steps: int = Field(
        default=1, description="Micro-batches per optimizer step."
    )
    learning_rate: float = Field(default=2e-5, description="Peak AdamW learning rate.")
    lr_scheduler: str = Field(
        default="cosine", description="transformers scheduler name (linear, cosine, ...)."
    )
    warmup_ratio: float = Field(
        default=0.03, description="Fraction of the steps spent warming the learning rate up."
    )
    weight_decay: float = Field(default=0.0, description="AdamW weight decay.")
    max_length: int = Field(
        default=1024, description="Truncate prompt+completion to this many tokens."
    )
    mixed_precision: Literal["no", "bf16", "fp16"] = Field(
        default="no", description="Autocast precision for training."
    )
    gradient_checkpointing: bool = Field(
        default=False, description="Trade compute for memory on large models."
    )
    logging_steps: int = Field(default=10, description="Log metrics every N optimizer steps.")
    tensorboard: bool = Field(
        default=True,
        description="Also write TensorBoard events to OUTPUT_DIR/tensorboard (if installed).",
    )
    merge_lora: bool = Field(
        default=True,
        description=(
            "With LoRA, save the merged full model at OUTPUT_DIR (adapters in OUTPUT_DIR/adapter) "
            "so PPO and `vul2safe eval` load it like any checkpoint."
        ),
    )


class RewardSection(BaseModel):
    """The ``reward:`` mapping, handed unchanged to srcode.rewards (which validates it)."""

    model_config = STRICT

    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Keys of srcode.rewards' own config (granularity, scanners, weights, ...).",
    )


class SRCodeConfig(BaseModel):
    """A whole SRCode run: one YAML file, one section per model."""

    model_config = STRICT

    model: ModelConfig = Field(default_factory=ModelConfig, description="Model section.")
    data: DataConfig = Field(default_factory=DataConfig, description="Data section.")
    sft: SFTRunConfig = Field(default_factory=SFTRunConfig, description="SFT section.")
    ppo: PPORunConfig = Field(default_factory=PPORunConfig, description="PPO section.")
    reward: RewardSection = Field(
        default_factory=RewardSection, description="Reward section (srcode.rewards)."
    )
    source_path: str | None = Field(
        default=None, description="The YAML file this was read from (set by load_config)."
    )


# --------------------------------------------------------------------------- loading


@functools.cache
def _yaml_loader() -> Any:
    """PyYAML's safe loader, reading ``1e-4`` as a number (YAML 1.2) rather than a string.

    PyYAML follows YAML 1.1, where a float needs a dot (``1.0e-4``); ``learning_rate: 1e-4``
    and ``--set ppo.learning_rate=5e-05`` (Python's own spelling) would otherwise be strings.
    """
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
        list("-+0123456789"),
    )
    return Loader


def load_yaml(text: str) -> Any:
    """YAML as every srcode config is read (:func:`_yaml_loader`; ``srcode reward`` too)."""
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: safe


def load_config(path: str | Path, overrides: list[str] | None = None) -> SRCodeConfig:
    """Read a YAML config; ``overrides`` are ``section.key=value`` strings (YAML values)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
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
    for name, section in raw.items():
        if section is None:  # an empty section in YAML means "all defaults"
            raw[name] = {}
    config = build(SRCodeConfig, raw, where=f"{path}: ")
    check_reward_section(reward, where=f"{path}: ")
    config.reward = RewardSection(options=reward)
    config.source_path = str(path.resolve())
    return config


def build(cls: type[BaseModel], data: Any, where: str = "") -> Any:
    """``cls.model_validate(data)``, with pydantic's errors as one :class:`ConfigError` line."""
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(where + _one_line(cls, exc)) from None


def _one_line(cls: type[BaseModel], exc: ValidationError) -> str:
    """The first error, in the words the old hand-written checks used (tests pin them)."""
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"] if not isinstance(part, int)]
    name = ".".join(loc) or cls.__name__
    value = error.get("input")
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(cls, loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{name}: unknown key{hint}; valid keys: {', '.join(known)}"
    if kind == "literal_error":
        choices = error.get("ctx", {}).get("expected", "")
        choices = choices.replace("'", "").replace(" or ", ", ")
        return f"{name}: {value!r} is not one of {choices}"
    expected = {
        "int_type": "an integer",
        "int_from_float": "an integer",
        "bool_type": "true or false",
        "float_type": "a number",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping",
        "model_attributes_type": "a mapping",
    }.get(kind)
    if expected:
        return f"{name}: expected {expected}, got {value!r}"
    return f"{name}: {error['msg']} (got {value!r})"


def _known_keys(cls: type[BaseModel], path: list[str]) -> list[str]:
    """Field names of the (nested) model at ``path``, in declaration order."""
    model: Any = cls
    for part in path:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            break
        model = annotation
    return [name for name in model.model_fields if name != "source_path"]


def check_reward_section(options: dict[str, Any], where: str = "") -> None:
    """Reject a bad ``reward:`` section now, not after the model has loaded.

    srcode.rewards owns the rules (RewardConfig's fields but ``kl_coef``, plus ``scanners``
    and ``mode``); this only turns its error into a :class:`ConfigError` naming the file.
    """
    from srcode.rewards import reward_config_from_options
    from vul2safe.errors import UsageError

    try:
        reward_config_from_options(dict(options))
    except UsageError as exc:
        raise ConfigError(f"{where}{exc}") from None


def _apply_override(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {override!r}: expected SECTION.KEY=VALUE")
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        node = node[part]
        if not isinstance(node, dict):
            raise ConfigError(f"--set {override!r}: {part} is not a section")
    node[parts[-1]] = load_yaml(value) if value.strip() else None


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """The model tree as plain data (for model cards and run records); reward as written."""
    out = config.model_dump()
    if isinstance(config, SRCodeConfig):
        out["reward"] = dict(config.reward.options)
    return out


def field_defaults(cls: type[BaseModel]) -> dict[str, Any]:
    """Defaults of a config model (docs and tests)."""
    fields = cls.model_fields.items()
    return {name: info.get_default(call_default_factory=True) for name, info in fields}


def json_schema() -> dict[str, Any]:
    """The JSON schema of a whole config file (``srcode schema``).

    ``reward:`` is written in YAML as srcode.rewards' own mapping (checked by
    :func:`check_reward_section`), not as ``RewardSection``'s ``options`` wrapper.
    """
    schema = SRCodeConfig.model_json_schema()
    schema["properties"]["reward"] = {
        "type": "object",
        "description": "srcode.rewards.RewardConfig's fields, plus `scanners` and `mode`.",
    }
    schema["properties"].pop("source_path", None)
    schema.get("$defs", {}).pop("RewardSection", None)
    return schema
