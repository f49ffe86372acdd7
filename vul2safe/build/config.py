"""The build configuration: one pydantic model, one documented precedence.

Precedence: **command-line flags > config file (``--config FILE``, YAML or JSON) > defaults**.
A flag replaces the file's value (``--source`` given on the command line replaces the file's
whole ``sources`` list). Unknown keys are errors at every level, with "did you mean", so a
misspelt setting never silently falls back to its default.

Each stage keeps its own settings in a dataclass next to its code (``PairsConfig`` in
:mod:`vul2safe.build.pairs`, ...); :class:`BuildConfig` holds one of each, imported lazily
so that ``vul2safe --help`` does not import the stages. The top-level ``seed`` is the
default ``seed`` of every stage that has one and does not set its own.

Example (``vul2safe build --config build.yaml --print-config`` shows the effective one)::

    sources: [sven:/data/sven/train, safecoder:/data/safecoder]
    teacher: {spec: "openai:Qwen/Qwen2.5-Coder-32B-Instruct", base_url: "http://gpu:8000/v1"}
    reflect: {votes: 5, confidence_threshold: 0.8}
    assemble: {group_by: project}
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from vul2safe.errors import UsageError

#: stage → (module, config class); every stage that has settings
STAGE_CONFIGS: dict[str, tuple[str, str]] = {
    "pairs": ("vul2safe.build.pairs", "PairsConfig"),
    "reflect": ("vul2safe.build.reflect", "ReflectConfig"),
    "localize": ("vul2safe.build.localize", "LocalizeConfig"),
    "prompts": ("vul2safe.build.prompts", "PromptsConfig"),
    "assemble": ("vul2safe.build.assemble", "AssembleConfig"),
    "publish": ("vul2safe.build.publish", "PublishConfig"),
}
TEACHER_KINDS: dict[str, str] = {
    "openai": "openai",
    "hf": "transformers",
    "transformers": "transformers",
    "vllm": "vllm",
}


def stage_config_class(stage: str) -> type[Any] | None:
    """The stage's config dataclass, or ``None`` while that stage module does not exist."""
    module_name, class_name = STAGE_CONFIGS[stage]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        return None
    return getattr(module, class_name, None)


def _unknown_keys(where: str, given: dict[str, Any], known: list[str]) -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise UsageError(
                f"unknown setting {where}.{key}.{hint} Known: {', '.join(sorted(known))}"
            )


def make_stage_config(stage: str, value: Any) -> Any:
    """A dict (from a file or flags) → the stage's dataclass, types checked and coerced."""
    cls = stage_config_class(stage)
    if cls is None:
        return dict(value or {})  # that stage is not installed: keep the settings as given
    if isinstance(value, cls):
        return value
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UsageError(f"setting {stage} must be a mapping of its options, not {value!r}")
    _unknown_keys(stage, value, [f.name for f in dataclasses.fields(cls)])
    try:
        return TypeAdapter(cls).validate_python(value)
    except ValidationError as exc:
        raise UsageError(f"setting {stage}: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


class TeacherConfig(BaseModel):
    """The model that reflects and writes prompts. ``spec``: ``openai:MODEL`` (an
    OpenAI-compatible server at ``base_url``), ``hf:PATH`` (transformers), ``vllm:PATH``."""

    model_config = ConfigDict(extra="forbid")

    spec: str | None = None
    base_url: str | None = None
    revision: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    timeout_s: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=5, ge=0)
    device: str = "auto"
    dtype: str = "auto"
    options: dict[str, Any] = Field(default_factory=dict)  # backend-specific ``extra``

    @field_validator("spec")
    @classmethod
    def _check_spec(cls, value: str | None) -> str | None:
        if value is None:
            return None
        kind, sep, model = value.partition(":")
        if not sep or not model.strip() or kind not in TEACHER_KINDS:
            raise ValueError(
                f"teacher {value!r}: write openai:MODEL (with --base-url), hf:PATH or vllm:PATH"
            )
        return value

    def backend_and_model(self) -> tuple[str, str]:
        """(registered backend name, model id or path)."""
        if self.spec is None:
            raise UsageError("no teacher: pass --teacher openai:MODEL --base-url URL")
        kind, _, model = self.spec.partition(":")
        return TEACHER_KINDS[kind], model.strip()


class BuildConfig(BaseModel):
    """Everything ``vul2safe build`` needs; see the module docstring for precedence."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    sources: list[str] = Field(default_factory=list)
    limit: int | None = Field(default=None, ge=1)
    seed: int = 0
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    pairs: Any = None
    reflect: Any = None
    localize: Any = None
    prompts: Any = None
    assemble: Any = None
    publish: Any = None

    @model_validator(mode="before")
    @classmethod
    def _stages_and_seed(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("teacher"), str):
            data["teacher"] = {"spec": data["teacher"]}
        seed = data.get("seed", 0)
        for stage in STAGE_CONFIGS:
            value = data.get(stage)
            stage_cls = stage_config_class(stage)
            if value is None or isinstance(value, dict):
                value = dict(value or {})
                has_seed = stage_cls is not None and any(
                    f.name == "seed" for f in dataclasses.fields(stage_cls)
                )
                if has_seed and "seed" not in value:
                    value["seed"] = seed
            data[stage] = make_stage_config(stage, value)
        return data

    def stage(self, name: str) -> Any:
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_config_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON mapping (JSON by suffix; YAML otherwise, since JSON is YAML)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read --config {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else _yaml().safe_load(text)
    except Exception as exc:  # yaml.YAMLError / JSONDecodeError: the parser says where
        detail = " ".join(str(exc).split())
        raise UsageError(f"--config {path} does not parse: {detail}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"--config {path} must hold a mapping of settings")
    return data


def _as_dict(config: BuildConfig | dict[str, Any]) -> dict[str, Any]:
    return config.to_dict() if isinstance(config, BuildConfig) else dict(config)


def load_config(path: Path | None = None, overrides: dict[str, Any] | None = None) -> BuildConfig:
    """Defaults, then the file at ``path``, then ``overrides`` (the flags)."""
    data = read_config_file(path) if path is not None else {}
    data = _deep_merge(data, overrides or {})
    _unknown_keys("config", data, list(BuildConfig.model_fields))
    try:
        return BuildConfig.model_validate(data)
    except ValidationError as exc:
        raise UsageError(f"invalid build config: {_first_error(exc)}") from None


def _yaml() -> Any:
    try:
        import yaml
    except ImportError:
        raise UsageError(
            "YAML config files need PyYAML: pip install pyyaml (or write the config as .json)"
        ) from None
    return yaml


def dump_config(config: BuildConfig | dict[str, Any]) -> str:
    """The effective config as YAML (reloadable with ``--config``); JSON without PyYAML."""
    try:
        import yaml
    except ImportError:
        return json.dumps(_as_dict(config), indent=2) + "\n"
    return str(yaml.safe_dump(_as_dict(config), sort_keys=False, allow_unicode=True))


__all__ = [
    "STAGE_CONFIGS",
    "BuildConfig",
    "TeacherConfig",
    "dump_config",
    "load_config",
    "make_stage_config",
    "read_config_file",
    "stage_config_class",
]
