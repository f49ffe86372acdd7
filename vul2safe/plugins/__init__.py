"""The plugin manager, and the name registries built from it.

In-tree plugins (``DEFAULT_PLUGINS``, the modules of this package) are registered directly
under their module name; third-party plugins arrive through the entry-point group
``vul2safe``. Both use the same ``@hookimpl`` hooks. In-tree plugins sit in one sub-package per kind
(``scanner``, ``benchmark``, ``backend``, ``source``; singular, because the
plural names are the registries this module exports) rather than beside each contract: the
contracts (``vul2safe.scanning``, ``vul2safe.benchmark``, ``vul2safe.generation.base``,
``vul2safe.build.source``) then import without pulling any tool wrapper, and the folder shows a
plugin author exactly the shape of a third-party package.

Loading is lazy, idempotent and controllable from the environment:

- ``VUL2SAFE_LOAD_PLUGINS``: comma-separated allow-list of entry-point plugins (empty: none).
- ``VUL2SAFE_DISABLE_PLUGINS``: comma-separated plugins to block, by short name (``bandit``),
  module name (``vul2safe.plugins.scanner.bandit``) or entry-point name.
- ``VUL2SAFE_TRACE_PLUGINS=1``: print every hook call to stderr.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import os
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from vul2safe import hookspecs
from vul2safe.errors import DuplicatePluginError, UnknownPluginError

DEFAULT_PLUGINS: tuple[str, ...] = (
    "vul2safe.plugins.scanner.bandit",
    "vul2safe.plugins.scanner.semgrep",
    "vul2safe.plugins.scanner.icd",
    "vul2safe.plugins.scanner.flawfinder",
    "vul2safe.plugins.scanner.cppcheck",
    "vul2safe.plugins.scanner.codeql",
    "vul2safe.plugins.scanner.sarif_import",
    "vul2safe.plugins.benchmark.humaneval_pro",
    "vul2safe.plugins.benchmark.mbpp_pro",
    "vul2safe.plugins.benchmark.cyberseceval",
    "vul2safe.plugins.benchmark.primevul_plus",
    "vul2safe.plugins.benchmark.cweval",
    "vul2safe.plugins.source.primevul",
    "vul2safe.plugins.source.sven",
    "vul2safe.plugins.source.safecoder",
    "vul2safe.plugins.backend.transformers_backend",
    "vul2safe.plugins.backend.openai_backend",
    "vul2safe.plugins.backend.vllm_backend",
)
ENTRY_POINT_GROUP = "vul2safe"

pm = pluggy.PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_lock = threading.RLock()
_loaded = False


def _env_list(name: str) -> list[str] | None:
    """``None`` when unset; an empty list when set to the empty string."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def _blocked_names() -> set[str]:
    names: set[str] = set()
    for item in _env_list("VUL2SAFE_DISABLE_PLUGINS") or []:
        names.add(item)
        names.update(module for module in DEFAULT_PLUGINS if module.rsplit(".", 1)[-1] == item)
    return names


def load_plugins() -> pluggy.PluginManager:
    """Register in-tree and entry-point plugins once; fail loudly on a misspelt hook."""
    global _loaded
    with _lock:
        if _loaded:
            return pm
        blocked = _blocked_names()
        for name in blocked:
            pm.set_blocked(name)
        for module_name in DEFAULT_PLUGINS:
            if module_name in blocked or pm.has_plugin(module_name):
                continue
            pm.register(importlib.import_module(module_name), module_name)
        allowed = _env_list("VUL2SAFE_LOAD_PLUGINS")
        if allowed is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            for name in allowed:
                pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP, name=name)
        pm.check_pending()
        if os.environ.get("VUL2SAFE_TRACE_PLUGINS") == "1":
            _enable_tracing()
        _loaded = True
        return pm


def _enable_tracing() -> None:
    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        names = ", ".join(impl.plugin_name for impl in impls)
        print(f"[vul2safe plugins] {hook_name} -> {names}", file=sys.stderr)

    def after(outcome: Any, hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        return None

    pm.add_hookcall_monitoring(before, after)


T = TypeVar("T")


@dataclass
class Registry(Generic[T]):
    """Name → object for one plugin kind. Names are metric keys, so duplicates are errors."""

    kind: str
    hook_name: str
    _items: dict[str, T] = field(default_factory=dict)
    _owners: dict[str, str] = field(default_factory=dict)
    _built: bool = False

    def _build(self) -> None:
        load_plugins()
        items: dict[str, T] = {}
        owners: dict[str, str] = {}
        hook = getattr(pm.hook, self.hook_name)
        for impl in reversed(hook.get_hookimpls()):  # pluggy calls LIFO; keep registration order

            def register(obj: T, _plugin: str = impl.plugin_name) -> None:
                name = getattr(obj, "name", None)
                if not isinstance(name, str) or not name:
                    raise DuplicatePluginError(
                        f"plugin {_plugin} registered a {self.kind} without a 'name'"
                    )
                if name in items:
                    raise DuplicatePluginError(
                        f"two plugins register a {self.kind} named {name!r}: "
                        f"{owners[name]} and {_plugin}; disable one with "
                        f"VUL2SAFE_DISABLE_PLUGINS={_plugin}"
                    )
                items[name] = obj
                owners[name] = _plugin

            impl.function(register=register)
        self._items, self._owners, self._built = items, owners, True

    def _ensure(self) -> dict[str, T]:
        with _lock:
            if not self._built:
                self._build()
        return self._items

    def names(self) -> list[str]:
        return list(self._ensure())

    def owner(self, name: str) -> str:
        self._ensure()
        return self._owners[name]

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._ensure().values()))

    def __contains__(self, name: object) -> bool:
        return name in self._ensure()

    def get(self, name: str) -> T:
        items = self._ensure()
        if name in items:
            return items[name]
        raise UnknownPluginError(unknown_name_message(self.kind, name, list(items)))

    def reset(self) -> None:
        with _lock:
            self._items, self._owners, self._built = {}, {}, False


def unknown_name_message(kind: str, name: str, available: list[str]) -> str:
    """Explain an unknown name: "Unknown scanner 'semgrap'. Did you mean: semgrep? Available: …"."""
    message = f"Unknown {kind} {name!r}."
    close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
    if close:
        message += f" Did you mean: {', '.join(close)}?"
    message += f" Available: {', '.join(sorted(available)) or '(none)'}."
    return message


scanners: Registry[Any] = Registry("scanner", "register_scanners")
benchmarks: Registry[Any] = Registry("benchmark", "register_benchmarks")
backends: Registry[Any] = Registry("backend", "register_backends")
sources: Registry[Any] = Registry("source", "register_sources")
REGISTRIES: tuple[Registry[Any], ...] = (scanners, benchmarks, backends, sources)


def reset_registries() -> None:
    """Forget built registries, e.g. after a test registers a throwaway plugin."""
    for registry in REGISTRIES:
        registry.reset()


def describe_plugins() -> list[dict[str, Any]]:
    """What ``vul2safe plugins`` shows: each plugin, its hooks, what it registered, its dist."""
    load_plugins()
    dists = {id(plugin): dist for plugin, dist in pm.list_plugin_distinfo()}
    provided: dict[str, dict[str, list[str]]] = {}
    for registry in REGISTRIES:
        for name in registry.names():
            provided.setdefault(registry.owner(name), {}).setdefault(registry.kind, []).append(name)
    rows = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:  # blocked
            rows.append({"name": name, "blocked": True, "hooks": [], "provides": {}})
            continue
        hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
        dist = dists.get(id(plugin))
        row: dict[str, Any] = {
            "name": name,
            "blocked": False,
            "in_tree": name in DEFAULT_PLUGINS,
            "hooks": hooks,
            "provides": provided.get(name, {}),
        }
        if dist is not None:
            row["distribution"] = {"name": dist.metadata["Name"], "version": dist.version}
        rows.append(row)
    return rows


def call_register_commands(app: Any) -> None:
    """Let plugins add CLI commands to ``app``."""
    load_plugins()
    pm.hook.register_commands(app=app)


__all__ = [
    "DEFAULT_PLUGINS",
    "ENTRY_POINT_GROUP",
    "Registry",
    "backends",
    "benchmarks",
    "describe_plugins",
    "load_plugins",
    "pm",
    "reset_registries",
    "scanners",
    "sources",
    "unknown_name_message",
]
