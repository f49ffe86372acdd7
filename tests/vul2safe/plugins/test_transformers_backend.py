"""The transformers backend end to end on a tiny random model built in the test session."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from vul2safe import plugins
from vul2safe.errors import UsageError, Vul2SafeError
from vul2safe.generation.base import (
    BackendOptions,
    Completion,
    GenerationRequest,
    Prompt,
    SamplingParams,
)
from vul2safe.generation.local_model import local_fingerprint, resolve_model
from vul2safe.generation.prompting import encode_prompt, render_prompt
from vul2safe.plugins.backend.transformers_backend import (
    TransformersBackend,
    TransformersSession,
    context_window,
)
from vul2safe.testing.tiny_model import CHAT_TEMPLATE, build_tiny_model, set_context_window

CHAT = Prompt(
    "chat",
    "chat",
    messages=(
        {"role": "system", "content": "You write secure code."},
        {"role": "user", "content": "Write a C function that copies a string."},
    ),
)
PREFIXED = Prompt(
    "prefixed",
    "chat",
    messages=({"role": "user", "content": "Read a file safely."},),
    response_prefix="```python\n",
)
COMPLETION = Prompt("completion", "completion", text="def read_config(path):\n")
SAMPLED = SamplingParams(temperature=1.0, top_p=0.95, max_tokens=12, seed=7)


def _run(session: TransformersSession, requests: list[GenerationRequest], params: SamplingParams):
    results = dict(session.generate(requests, params))
    assert sorted(results) == list(range(len(requests)))  # every request exactly once
    return [results[i] for i in range(len(requests))]


@pytest.fixture(scope="module")
def session(tiny_model_dir: Path) -> Iterator[TransformersSession]:
    opened = TransformersBackend().open(BackendOptions(model=str(tiny_model_dir), batch_size=4))
    yield opened
    opened.close()


def test_registered_under_its_name() -> None:
    assert isinstance(plugins.backends.get("transformers"), TransformersBackend)


def test_describe_records_model_identity(session: TransformersSession, tiny_model_dir: Path):
    info = session.describe()
    assert info["backend"] == "transformers"
    assert info["model"] == str(tiny_model_dir)
    assert info["revision"] == local_fingerprint(tiny_model_dir)
    assert info["revision"].startswith("local-")
    assert info["chat_template"] == CHAT_TEMPLATE
    assert info["mode"] == "chat"
    assert info["device"] == "cpu"


def test_chat_template_and_response_prefix(session: TransformersSession) -> None:
    text, add_special = render_prompt(session.tokenizer, PREFIXED, True)
    assert (
        text
        == "<|im_start|>user\nRead a file safely.<|im_end|>\n<|im_start|>assistant\n```python\n"
    )
    assert add_special is False  # the template already holds the special tokens
    [chat, prefixed] = _run(
        session, [GenerationRequest(CHAT, 0), GenerationRequest(PREFIXED, 0)], SAMPLED
    )
    assert prefixed.prompt_tokens == len(encode_prompt(session.tokenizer, PREFIXED, True))
    assert chat.prompt_tokens == len(encode_prompt(session.tokenizer, CHAT, True))
    for completion in (chat, prefixed):
        assert completion.completion_tokens == 12
        assert completion.finish_reason == "length"
        assert completion.text and not completion.text.startswith("```python")


def test_completion_mode_without_chat_template(tiny_model_dir: Path) -> None:
    options = BackendOptions(model=str(tiny_model_dir), use_chat_template=False)
    with TransformersBackend().open(options) as plain:
        info = plain.describe()
        assert info["mode"] == "completion" and info["chat_template"] is None
        text, add_special = render_prompt(plain.tokenizer, PREFIXED, False)
        assert text == "Read a file safely.\n\n```python\n" and add_special
        assert "<|im_start|>" not in render_prompt(plain.tokenizer, CHAT, False)[0]
        [chat, completion] = _run(
            plain, [GenerationRequest(CHAT, 0), GenerationRequest(COMPLETION, 0)], SAMPLED
        )
        joined = "You write secure code.\n\nWrite a C function that copies a string."
        assert chat.prompt_tokens == len(plain.tokenizer(joined)["input_ids"])
        assert completion.prompt_tokens == len(plain.tokenizer(COMPLETION.text)["input_ids"])
        assert completion.completion_tokens == 12


def test_n_samples_distinct_seeds_reproducible_across_batching(
    session: TransformersSession,
) -> None:
    requests = [GenerationRequest(p, i) for p in (CHAT, PREFIXED, COMPLETION) for i in range(4)]
    first = _run(session, requests, SAMPLED)
    for start in range(0, len(requests), 4):  # distinct seeds, distinct samples
        assert len({c.text for c in first[start : start + 4]}) == 4
    # a different batch size and order, as a resumed run would ask: the same samples
    session.options.batch_size = 1
    try:
        again = _run(session, requests[::-1], SAMPLED)[::-1]
    finally:
        session.options.batch_size = 4
    assert [c.text for c in again] == [c.text for c in first]
    # sample i is seeded with seed + i: seed 8's sample 0 is seed 7's sample 1
    shifted = _run(
        session,
        [GenerationRequest(CHAT, 0)],
        SamplingParams(**{**SAMPLED.to_dict(), "seed": 8, "stop": ()}),
    )
    assert shifted[0].text == first[1].text


def test_greedy_is_deterministic(session: TransformersSession) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=10)
    requests = [GenerationRequest(CHAT, 0), GenerationRequest(CHAT, 1)]
    a, b = _run(session, requests, greedy)
    assert a.text == b.text  # greedy ignores the seed
    assert _run(session, requests[:1], greedy)[0].text == a.text


def test_stop_strings_truncate_and_finish_with_stop(session: TransformersSession) -> None:
    greedy = SamplingParams(temperature=0.0, max_tokens=24)
    full = _run(session, [GenerationRequest(COMPLETION, 0)], greedy)[0]
    assert full.finish_reason == "length" and full.completion_tokens == 24
    stop = full.text[6:9]
    cut = full.text.index(stop)
    stopped = _run(
        session,
        [GenerationRequest(COMPLETION, 0)],
        SamplingParams(temperature=0.0, max_tokens=24, stop=("never-seen-stop", stop)),
    )[0]
    assert stopped.text == full.text[:cut]
    assert stopped.finish_reason == "stop"
    assert 0 < stopped.completion_tokens < 24


def test_finish_reasons_from_generated_rows(session: TransformersSession) -> None:
    """EOS ends a sample with "stop" and counts the EOS token; a full row is "length"."""
    eos = session.eos_ids[0]
    ids = session.tokenizer("int x = 1;", add_special_tokens=False)["input_ids"]
    params = SamplingParams(max_tokens=len(ids) + 3)
    ended = session._finish([*ids, eos, session.pad_id, session.pad_id], 5, params)
    assert ended == Completion("int x = 1;", "stop", 5, len(ids) + 1)
    full = session._finish(ids, 5, SamplingParams(max_tokens=len(ids)))
    assert full == Completion("int x = 1;", "length", 5, len(ids))
    stop = session._finish(ids, 5, SamplingParams(max_tokens=len(ids), stop=(" =",)))
    assert (stop.text, stop.finish_reason) == ("int x", "stop")


def test_missing_local_path_is_one_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "models" / "nope"
    with pytest.raises(Vul2SafeError) as excinfo:
        TransformersBackend().open(BackendOptions(model=str(missing)))
    assert str(excinfo.value) == f"model path does not exist: {missing}"


def test_directory_without_config_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(Vul2SafeError, match=r"no config\.json"):
        TransformersBackend().open(BackendOptions(model=str(tmp_path)))


def test_uncached_hub_id_offline_is_one_clear_error() -> None:
    with pytest.raises(Vul2SafeError) as excinfo:
        TransformersBackend().open(BackendOptions(model="example-org/never-downloaded"))
    assert str(excinfo.value) == (
        "model 'example-org/never-downloaded' not found: not a local directory and not in the "
        "Hugging Face cache (offline); pass a local path"
    )


def test_cached_hub_id_loads_offline_and_records_commit(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Hub id found in the HF cache loads offline; the snapshot's commit is the revision."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--example-org--tiny-coder"
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    resolved = resolve_model("example-org/tiny-coder")
    assert resolved.resolved_revision == commit and resolved.local_files_only
    with TransformersBackend().open(BackendOptions(model="example-org/tiny-coder")) as hub:
        assert hub.describe()["revision"] == commit
        assert _run(hub, [GenerationRequest(COMPLETION, 0)], SAMPLED)[0].completion_tokens == 12


def test_fingerprint_changes_when_weights_change(tiny_model_dir: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    assert local_fingerprint(copy) == local_fingerprint(tiny_model_dir)
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert local_fingerprint(copy) != local_fingerprint(tiny_model_dir)


def test_tiny_model_is_small_deterministic_and_vllm_shaped(
    tiny_model_dir: Path, session: TransformersSession, tmp_path: Path
) -> None:
    config = session.model.config
    assert (config.hidden_size, config.num_attention_heads, config.head_dim) == (64, 2, 32)
    assert 512 <= len(session.tokenizer) <= 1024
    code = "static int parse(const char *s) {\n    return atoi(s);\n}\n"
    encoded = session.tokenizer(code, return_offsets_mapping=True, add_special_tokens=False)
    assert session.tokenizer.decode(encoded["input_ids"]) == code  # byte-level: lossless
    assert "".join(code[a:b] for a, b in encoded["offset_mapping"]) == code
    again = build_tiny_model(tmp_path / "again", seed=0)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    other = build_tiny_model(tmp_path / "other", seed=1, chat_template=False)
    assert (other / "model.safetensors").read_bytes() != (again / "model.safetensors").read_bytes()
    assert not (other / "chat_template.jinja").exists()


# ------------------------------------------------------------------ max_tokens and the context


@pytest.fixture(scope="module")
def short_context(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model declaring a 40-token context (its weights are the same)."""
    copy = shutil.copytree(tiny_model_dir, tmp_path_factory.mktemp("ctx") / "tiny-40")
    return set_context_window(copy, 40)


def test_context_window_is_the_smaller_declared_limit(
    session: TransformersSession, short_context: Path
) -> None:
    tokenizer, model = session.tokenizer, session.model
    assert session.context == 2048 and session.describe()["context_window"] == 2048
    limit = tokenizer.model_max_length
    try:
        tokenizer.model_max_length = 1000
        assert context_window(model, tokenizer) == 1000
        tokenizer.model_max_length = int(1e30)  # transformers' "not declared" placeholder
        assert context_window(model, tokenizer) == 2048
    finally:
        tokenizer.model_max_length = limit
    opened = TransformersBackend().open(BackendOptions(model=str(short_context)))
    assert opened.context == 40
    opened.close()


def test_max_tokens_is_capped_by_the_context_per_request(
    session: TransformersSession, short_context: Path
) -> None:
    """A ceiling above the context generates exactly what the context leaves (the same text
    as asking for that many tokens), whichever prompts share the batch; less is obeyed."""
    small = TransformersBackend().open(BackendOptions(model=str(short_context), batch_size=8))
    texts = ["def f(x):\n", "int main(void) {\n    return 0;", "x = [1, 2, 3]\nprint(x)\n" * 2]
    prompts = [Prompt(f"p{i}", "completion", text=t) for i, t in enumerate(texts)]
    lengths = [len(encode_prompt(small.tokenizer, p, True)) for p in prompts]
    assert len(set(lengths)) == 3 and max(lengths) < 40
    requests = [GenerationRequest(p, 0) for p in prompts]
    capped = _run(small, requests, SamplingParams(max_tokens=4096))
    for request, length, got in zip(requests, lengths, capped, strict=True):
        assert got.prompt_tokens == length
        assert got.completion_tokens is not None and length + got.completion_tokens <= 40
        alone = _run(session, [request], SamplingParams(max_tokens=40 - length))[0]
        assert (got.text, got.finish_reason) == (alone.text, alone.finish_reason)
        if got.finish_reason == "length":
            assert got.completion_tokens == 40 - length
    explicit = _run(small, requests, SamplingParams(max_tokens=3))
    assert all(c.completion_tokens is not None and c.completion_tokens <= 3 for c in explicit)
    unbounded = _run(small, requests, SamplingParams(max_tokens=None))
    assert [c.text for c in unbounded] == [c.text for c in capped]
    small.close()


def test_prompt_filling_the_context_gets_an_empty_length_cut(short_context: Path) -> None:
    small = TransformersBackend().open(BackendOptions(model=str(short_context)))
    long = Prompt("long", "completion", text="def f(x):\n    return x + 1\n" * 20)
    ok = Prompt("ok", "completion", text="def f(x):\n")
    full, fine = _run(small, [GenerationRequest(long, 0), GenerationRequest(ok, 0)],
                      SamplingParams(max_tokens=8))  # fmt: skip
    assert full.text == "" and full.finish_reason == "length" and full.completion_tokens == 0
    assert full.prompt_tokens is not None and full.prompt_tokens > 40
    assert fine.completion_tokens is not None and 0 < fine.completion_tokens <= 8
    small.close()


def test_unknown_backend_arg_is_refused_naming_the_valid_ones(tiny_model_dir: Path) -> None:
    options = BackendOptions(model=str(tiny_model_dir), extra={"thread": 2})
    with pytest.raises(UsageError) as excinfo:
        TransformersBackend().open(options)
    assert str(excinfo.value) == (
        "the transformers backend has no option 'thread'; valid --backend-arg keys: threads "
        "(see docs/backends.md)"
    )
