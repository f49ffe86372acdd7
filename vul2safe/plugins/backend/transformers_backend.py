"""The ``transformers`` backend: generation in-process with Hugging Face ``generate``.

The embedded default: no server, any causal LM on the Hub or on disk, CPU or GPU.

Reproducibility. Sample ``i`` of a prompt uses seed ``params.seed + i`` and its own
``torch.Generator``: sampling happens in a logits processor that draws each row of the batch
from that row's generator, then hands ``generate`` a one-hot score so its greedy step takes the
drawn token. A sample therefore does not depend on which other requests share its batch, so a
resumed run (which batches only the missing pairs) reproduces the first run's text — up to the
float rounding that a different padding length can cause. ``temperature == 0`` is plain greedy.

CPU threads. ``extra["threads"]`` sets torch's intra-op threads for generation (on the calling
thread only, restored afterwards). The default ``"auto"`` uses 1 thread for models under 50M
parameters on CPU: their matrices are too small to gain from threads, and OpenMP's spinning
workers slow them down by 10-30x on a busy machine. Larger models keep torch's default.

Length. ``max_tokens`` is capped per request by the model's context window minus the prompt's
length (:func:`context_window`; :func:`~vul2safe.generation.base.token_budget`); requests of
one batch share a budget, so a sample's text never depends on its batch-mates' prompts.

Model resolution (local dir / Hub id / clear errors) and prompt rendering are shared with the
vLLM backend: :mod:`vul2safe.generation.local_model`, :mod:`vul2safe.generation.prompting`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from vul2safe import hookimpl
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import (
    Backend,
    BackendOptions,
    Completion,
    GenerationRequest,
    Prompt,
    SamplingParams,
    Session,
    check_extra,
    token_budget,
)
from vul2safe.generation.local_model import (
    ResolvedModel,
    resolve_dtype,
    resolve_model,
    with_downloaded_revision,
)
from vul2safe.generation.prompting import encode_prompt, has_chat_template, truncate_at_stop
from vul2safe.hookspecs import Register

if TYPE_CHECKING:
    import torch

# --------------------------------------------------------------------------- the session

OPTIONS = frozenset({"threads"})  # the ``extra`` keys this backend reads
_POSITION_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")
_NO_LIMIT = 10**8  # tokenizers without a declared limit say 1e30 (transformers' placeholder)


def context_window(model: Any, tokenizer: Any) -> int | None:
    """The model's context in tokens, or ``None`` when nothing declares it.

    The config's position limit (``max_position_embeddings`` and its older names) and the
    tokenizer's ``model_max_length`` when that is a real number rather than transformers'
    "unset" placeholder; the smaller when both are, so neither is ever exceeded.
    """
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    found = [
        value
        for value in (getattr(text, key, None) for key in _POSITION_KEYS)
        if isinstance(value, int) and value > 0
    ][:1]
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _NO_LIMIT:
        found.append(limit)
    return min(found) if found else None


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    eos = getattr(model.generation_config, "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [int(e) for e in eos] if isinstance(eos, list | tuple) else [int(eos)]


def _make_sampler(seeds: Sequence[int], temperature: float, top_p: float, device: Any) -> Any:
    """The per-row seeded sampler (see the module docstring for why)."""
    import torch
    from transformers import LogitsProcessor

    class SeededRowSampler(LogitsProcessor):
        def __init__(self) -> None:
            self.generators = [
                torch.Generator(device=device).manual_seed(int(s) % (2**63)) for s in seeds
            ]

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            probs = torch.softmax(scores.float() / temperature, dim=-1)
            if top_p < 1.0:
                sorted_probs, order = torch.sort(probs, descending=True, dim=-1)
                drop = sorted_probs.cumsum(dim=-1) - sorted_probs > top_p  # keeps ≥ 1 token
                sorted_probs = sorted_probs.masked_fill(drop, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            picks = torch.stack(
                [
                    torch.multinomial(probs[row], 1, generator=g)
                    for row, g in enumerate(self.generators)
                ]
            )
            chosen = torch.full_like(scores, float("-inf"))
            return chosen.scatter(-1, picks, 0.0)

    return SeededRowSampler()


SMALL_MODEL_PARAMS = 50_000_000


def _auto_threads(model: Any, setting: Any) -> int | None:
    if setting not in (None, "auto"):
        return int(setting)
    if setting is None or str(model.device) != "cpu":
        return None
    return 1 if model.num_parameters() < SMALL_MODEL_PARAMS else None


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Intra-op threads for this OS thread only (an OpenMP per-thread setting), restored."""
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class TransformersSession(Session):
    """A loaded model + tokenizer; ``generate`` batches ``options.batch_size`` prompts."""

    def __init__(
        self, model: Any, tokenizer: Any, options: BackendOptions, resolved: ResolvedModel
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.options = options
        self.resolved = resolved
        self.chat = options.use_chat_template and has_chat_template(tokenizer)
        self.eos_ids = _eos_ids(model, tokenizer)
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else (self.eos_ids[0] if self.eos_ids else 0)
        self.threads = _auto_threads(model, options.extra.get("threads", "auto"))
        self.context = context_window(model, tokenizer)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": "transformers",
            "model": self.options.model,
            "revision": self.resolved.resolved_revision or self.options.revision,
            "requested_revision": self.options.revision,
            "chat_template": self.tokenizer.chat_template if self.chat else None,
            "mode": "chat" if self.chat else "completion",
            "device": str(self.model.device),
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "threads": self.threads,
            "context_window": self.context,
        }

    def generate(
        self, requests: Sequence[GenerationRequest], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        items = [(r.prompt, params.seed + r.sample_index) for r in requests]
        yield from self.generate_seeded(items, params)

    def generate_seeded(
        self, items: Sequence[tuple[Prompt, int]], params: SamplingParams
    ) -> Iterator[tuple[int, Completion]]:
        """Like :meth:`generate` with explicit per-item seeds (the HTTP server's entry)."""
        encoded = [
            encode_prompt(self.tokenizer, p, self.options.use_chat_template) for p, _ in items
        ]
        budgets = [token_budget(params.max_tokens, self.context, len(ids)) for ids in encoded]
        if None in budgets:
            raise UsageError(
                f"model '{self.options.model}' declares no context length; pass --max-tokens N"
            )
        for index, budget in enumerate(budgets):
            if budget == 0:  # the prompt fills the context: nothing left to generate
                yield index, Completion("", "length", len(encoded[index]), 0)
        # similar lengths together: less padding, and padding is what can perturb rounding;
        # a budget falls as the prompt grows, so equal budgets are neighbours in this order
        order = sorted((i for i in range(len(items)) if budgets[i]), key=lambda i: len(encoded[i]))
        size = max(1, self.options.batch_size)
        chunk: list[int] = []
        for position, i in enumerate(order):
            chunk.append(i)
            following = order[position + 1] if position + 1 < len(order) else None
            if len(chunk) < size and following is not None and budgets[following] == budgets[i]:
                continue
            completions = self._generate_batch(
                [encoded[j] for j in chunk], [items[j][1] for j in chunk], params, budgets[i]
            )
            yield from zip(chunk, completions, strict=True)
            chunk = []

    def _generate_batch(
        self, prompts: list[list[int]], seeds: list[int], params: SamplingParams, budget: int
    ) -> list[Completion]:
        import torch
        from transformers import LogitsProcessorList

        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[self.pad_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        config = self.model.generation_config.__class__.from_dict(
            self.model.generation_config.to_dict()
        )
        config.update(
            max_new_tokens=budget,
            do_sample=False,  # sampling, when wanted, is SeededRowSampler's job
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            pad_token_id=self.pad_id,
            eos_token_id=self.eos_ids or None,
            stop_strings=list(params.stop) or None,
        )
        processors = LogitsProcessorList()
        if params.temperature > 0:
            processors.append(
                _make_sampler(seeds, params.temperature, params.top_p, self.model.device)
            )
        with torch.inference_mode(), _torch_threads(self.threads):
            output = self.model.generate(
                input_ids=input_ids.to(self.model.device),
                attention_mask=mask.to(self.model.device),
                generation_config=config,
                logits_processor=processors,
                tokenizer=self.tokenizer if params.stop else None,
            )
        rows = output[:, width:].tolist()
        return [
            self._finish(row, len(p), params, budget) for row, p in zip(rows, prompts, strict=True)
        ]

    def _finish(
        self, row: list[int], prompt_tokens: int, params: SamplingParams, budget: int | None = None
    ) -> Completion:
        """Turn one generated row into a Completion: stop strings, EOS, length, counts.
        ``budget``: the tokens this request could generate (default ``params.max_tokens``)."""
        eos_at = next((i for i, tok in enumerate(row) if tok in self.eos_ids), None)
        body = row if eos_at is None else row[:eos_at]
        full = self.tokenizer.decode(body, skip_special_tokens=True)
        text, stopped = truncate_at_stop(full, params.stop)
        if stopped:
            # fewest tokens whose text reaches past the cut: the tokens the model really spent
            cut = len(text) + min(
                (len(s) for s in params.stop if s and full.startswith(s, len(text))), default=0
            )
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if len(self.tokenizer.decode(body[:mid], skip_special_tokens=True)) >= cut:
                    hi = mid
                else:
                    lo = mid + 1
            return Completion(text, "stop", prompt_tokens, lo)
        if eos_at is not None:
            return Completion(text, "stop", prompt_tokens, eos_at + 1)
        limit = params.max_tokens if budget is None else budget
        reason = "length" if limit is not None and len(row) >= limit else "stop"
        return Completion(text, reason, prompt_tokens, len(row))

    def close(self) -> None:
        import gc

        self.model = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # pragma: no cover - torch is what loaded the model
            pass


# --------------------------------------------------------------------------- the backend


def _torch_dtype(name: str) -> Any:
    import torch

    return getattr(torch, name)


def _device(name: str) -> str:
    if name != "auto":
        return name
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend(Backend):
    name = "transformers"
    description = "Hugging Face transformers in-process (CPU or GPU); the embedded default"

    def open(self, options: BackendOptions) -> TransformersSession:
        check_extra(self.name, options.extra, OPTIONS)
        resolved = resolve_model(options.model, options.revision)
        try:
            from transformers import AutoModelForCausalLM, AutoTokenizer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise Vul2SafeError(
                f"the transformers backend needs torch and transformers ({exc}); "
                "pip install torch==2.13.0 'vul2safe[hf]'"
            ) from None
        dtype = resolve_dtype(options.dtype, resolved)
        common: dict[str, Any] = {
            "revision": resolved.revision,
            "local_files_only": resolved.local_files_only,
        }
        if resolved.cache_dir is not None:
            common["cache_dir"] = resolved.cache_dir
        if not sys.stderr.isatty():  # a progress bar in a log file is noise
            hf_logging.disable_progress_bar()
        try:
            tokenizer = AutoTokenizer.from_pretrained(resolved.source, **common)
            model: Any = AutoModelForCausalLM.from_pretrained(
                resolved.source, dtype=_torch_dtype(dtype), **common
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise Vul2SafeError(f"cannot load model '{options.model}': {first}") from None
        model.to(_device(options.device)).eval()
        resolved = with_downloaded_revision(resolved)
        return TransformersSession(model, tokenizer, options, resolved)


@hookimpl
def register_backends(register: Register) -> None:
    register(TransformersBackend())
