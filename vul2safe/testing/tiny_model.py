"""A tiny random causal LM built entirely offline, for tests, benchmarks and SRCode smoke runs.

Nothing can be downloaded in CI, yet the generation backends, the OpenAI-compatible server and
the trainer need a *real* Hugging Face model directory: a trained byte-level BPE tokenizer (so
offset mappings and chat templates behave like a real model's) and a Llama config small enough
to run in milliseconds on a CPU. The weights are random: the text is gibberish, but it is
deterministic for a given ``seed`` and corpus (SVEN's functions from ``../shared/data`` when
present, else an embedded snippet corpus). The shape (hidden 64, 2 heads of 32) is one vLLM
accepts.

``python -m vul2safe.testing.tiny_model OUT_DIR`` builds one from the command line.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SHARED_SVEN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sven" / "train"

PAD, BOS, EOS = "<|pad|>", "<|bos|>", "<|endoftext|>"
IM_START, IM_END = "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (PAD, BOS, EOS, IM_START, IM_END)

# ChatML, the format Qwen2.5-Coder uses; the generation prompt opens an assistant turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Used when the shared SVEN data is not beside the repository (e.g. an installed wheel).
_PYTHON_CORPUS = '''
import os
import subprocess
import sqlite3
from pathlib import Path


def read_config(path: str) -> dict[str, str]:
    """Parse KEY=VALUE lines, ignoring comments."""
    values: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def find_user(conn: sqlite3.Connection, name: str) -> tuple | None:
    cursor = conn.execute("SELECT id, name FROM users WHERE name = ?", (name,))
    return cursor.fetchone()


def list_directory(base: Path, relative: str) -> list[str]:
    target = (base / relative).resolve()
    if base.resolve() not in target.parents and target != base.resolve():
        raise ValueError("path escapes the base directory")
    return sorted(entry.name for entry in target.iterdir())


def run_ping(host: str) -> str:
    result = subprocess.run(["ping", "-c", "1", host], capture_output=True, text=True)
    return result.stdout


class Counter:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def add(self, word: str) -> None:
        self.counts[word] = self.counts.get(word, 0) + 1

    def most_common(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda item: -item[1])[:n]


def fibonacci(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True


def env_flag(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return raw.lower() in {"1", "true", "yes"}
'''

_C_CORPUS = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct buffer {
    char *data;
    size_t len;
    size_t cap;
};

int buffer_append(struct buffer *buf, const char *src, size_t n)
{
    if (buf->len + n < buf->len)
        return -1;
    if (buf->len + n > buf->cap) {
        size_t cap = buf->cap ? buf->cap * 2 : 16;
        while (cap < buf->len + n)
            cap *= 2;
        char *data = realloc(buf->data, cap);
        if (data == NULL)
            return -1;
        buf->data = data;
        buf->cap = cap;
    }
    memcpy(buf->data + buf->len, src, n);
    buf->len += n;
    return 0;
}

static int parse_int(const char *text, int *out)
{
    char *end = NULL;
    long value = strtol(text, &end, 10);
    if (end == text || *end != '\0')
        return -1;
    if (value > 2147483647L || value < -2147483647L - 1)
        return -1;
    *out = (int)value;
    return 0;
}

void copy_name(char *dst, size_t dst_len, const char *src)
{
    if (dst_len == 0)
        return;
    strncpy(dst, src, dst_len - 1);
    dst[dst_len - 1] = '\0';
}

int read_file(const char *path, struct buffer *out)
{
    FILE *fp = fopen(path, "rb");
    char chunk[4096];
    size_t n;
    if (fp == NULL)
        return -1;
    while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0) {
        if (buffer_append(out, chunk, n) != 0) {
            fclose(fp);
            return -1;
        }
    }
    fclose(fp);
    return 0;
}

int main(int argc, char **argv)
{
    int count = 0;
    if (argc < 2 || parse_int(argv[1], &count) != 0) {
        fprintf(stderr, "usage: %s COUNT\n", argv[0]);
        return 1;
    }
    for (int i = 0; i < count; i++)
        printf("%d\n", i);
    return 0;
}
"""
_EMBEDDED_CORPUS = _PYTHON_CORPUS + _C_CORPUS


def _corpus(max_chars: int = 300_000) -> Iterator[str]:
    """Real code when the shared SVEN data is there (a realistic vocabulary), else ours."""
    files = sorted(SHARED_SVEN.glob("*.jsonl")) if SHARED_SVEN.is_dir() else []
    budget = max_chars
    per_file = max_chars // max(len(files), 1)
    for path in files:
        used = 0
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                if used >= per_file:
                    break
                record = json.loads(line)
                for key in ("func_src_before", "func_src_after"):
                    text = str(record.get(key) or "")
                    used += len(text)
                    budget -= len(text)
                    yield text
    yield _EMBEDDED_CORPUS
    if budget > 0:  # no shared data: weight the embedded corpus a little more
        yield from (_EMBEDDED_CORPUS for _ in range(3))


def train_tokenizer(vocab_size: int = 768) -> object:
    """Train a byte-level BPE (GPT-2/Qwen style: any byte sequence round-trips)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    # trim_offsets=False keeps offsets exact (leading spaces included): SRCode maps scanner
    # findings to tokens through them.
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_corpus(), trainer=trainer)
    return tokenizer


def build_tiny_model(
    path: Path,
    *,
    head_dim: int = 32,
    layers: int = 2,
    seed: int = 0,
    chat_template: bool = True,
    vocab_size: int = 768,
) -> Path:
    """Write a tiny random Llama model + trained tokenizer to ``path``; return ``path``.

    Two attention heads of ``head_dim`` (hidden = 2 × head_dim). Deterministic for ``seed``;
    the global torch RNG is left untouched.
    """
    import torch
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)

    fast = PreTrainedTokenizerFast(
        tokenizer_object=train_tokenizer(vocab_size),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=2048,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    ids: dict[str, int] = {}
    for token in SPECIAL_TOKENS:
        found = fast.convert_tokens_to_ids(token)
        ids[token] = found if isinstance(found, int) else found[0]

    hidden = 2 * head_dim
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=head_dim,
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=ids[BOS],
        eos_token_id=ids[EOS],
        pad_token_id=ids[PAD],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = LlamaForCausalLM(config)
        model = model.to(torch.float32).eval()
    # A chat turn ends with <|im_end|>; plain text with <|endoftext|> (as Qwen2 does).
    eos_ids = [ids[EOS], ids[IM_END]] if chat_template else [ids[EOS]]
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=eos_ids, pad_token_id=ids[PAD]
    )
    model.save_pretrained(path)
    fast.save_pretrained(path)
    _add_legacy_keys(path, rope_theta=10000.0)
    return path


def _add_legacy_keys(path: Path, *, rope_theta: float) -> None:
    """Also spell the files the transformers 4.x way, for tools (e.g. a vLLM build) that pin
    it: a generic tokenizer class and list of special tokens, a top-level ``rope_theta``."""
    tokenizer_config = path / "tokenizer_config.json"
    data = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    data["tokenizer_class"] = "PreTrainedTokenizerFast"
    data.setdefault("additional_special_tokens", [IM_START, IM_END])
    tokenizer_config.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    config_path = path / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.setdefault("rope_theta", rope_theta)
    config.setdefault("torch_dtype", config.get("dtype", "float32"))
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m vul2safe.testing.tiny_model OUT_DIR", file=sys.stderr)
        return 2
    print(build_tiny_model(Path(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def set_context_window(path: Path, tokens: int) -> Path:
    """Declare a ``tokens``-long context in a saved model (config and tokenizer), so tests can
    reach the context's end in a few steps; returns ``path``."""
    for name, key in (("config.json", "max_position_embeddings"),
                      ("tokenizer_config.json", "model_max_length")):  # fmt: skip
        file = Path(path) / name
        data = json.loads(file.read_text(encoding="utf-8"))
        data[key] = tokens
        file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return Path(path)
