"""Rollouts sample from exactly the distribution PPO scores, with dropout really off.

The tiny model's own ``generation_config.json`` is given the settings a real checkpoint
ships (Qwen: repetition penalty, top-k, top-p, its own temperature): ``generate`` would apply
them to every field we leave unset. The test compares the processed scores ``generate``
sampled from with the trainer's log-probs of the same tokens (``response_logprobs`` on a
``PolicyWithValueHead`` forward of the packed batch), and shows the comparison fails when the
checkpoint's settings are let in.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from srcode.ppo import PolicyWithValueHead, RolloutBatch, disable_dropout, response_logprobs
from srcode.ppo_config import PPORunConfig
from srcode.rollout import TransformersRollouts, cut_at_eos, left_pad
from vul2safe.testing.tiny_model import build_tiny_model

CHECKPOINT_SETTINGS = {
    "repetition_penalty": 1.5,
    "top_k": 3,
    "top_p": 0.5,
    "temperature": 0.2,
    "no_repeat_ngram_size": 2,
    "do_sample": True,
}


@pytest.fixture(scope="module")
def tiny_with_qwen_like_defaults(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=3)
    settings_file = path / "generation_config.json"
    settings = json.loads(settings_file.read_text())
    settings.update(CHECKPOINT_SETTINGS)
    settings_file.write_text(json.dumps(settings))
    return path


def load(path: Path, **overrides: object) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32", **overrides)
    return model, AutoTokenizer.from_pretrained(path)


def prompts_for(tokenizer: object) -> list[list[int]]:
    texts = ["def read_config(path):", "import subprocess\n", "SELECT * FROM"]
    return [tokenizer(t)["input_ids"] for t in texts]  # type: ignore[operator]


def trainer_view(
    model: torch.nn.Module,
    prompts: list[list[int]],
    responses: list[list[int]],
    pad_id: int,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor, RolloutBatch]:
    """The trainer's log-probs and entropies of the responses (srcode.ppo's code path)."""
    batch = RolloutBatch.pack(prompts, responses, pad_id, "cpu")
    head = PolicyWithValueHead(model, model.config.hidden_size).eval()
    with torch.no_grad():
        logits, _ = head(batch.input_ids, batch.attention_mask)
    width = batch.prompt_width
    logprobs, entropy = response_logprobs(logits[:, width - 1 : -1], batch.responses, temperature)
    return logprobs, entropy, batch


def sampled_view(
    scores: list[torch.Tensor], batch: RolloutBatch
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the distributions ``generate`` actually sampled from."""
    steps = batch.responses.shape[1]
    logp = torch.log_softmax(torch.stack(scores[:steps], dim=1).float(), dim=-1)
    chosen = logp.gather(-1, batch.responses.unsqueeze(-1)).squeeze(-1)
    probs = logp.exp()
    entropy = -(probs * torch.where(probs > 0, logp, torch.zeros_like(logp))).sum(-1)
    return chosen, entropy


def test_rollouts_sample_the_distribution_ppo_scores(tiny_with_qwen_like_defaults: Path) -> None:
    model, tokenizer = load(tiny_with_qwen_like_defaults)
    run = PPORunConfig(temperature=0.7, max_new_tokens=12)
    eos = [tokenizer.eos_token_id]
    rollouts = TransformersRollouts(run, tokenizer.pad_token_id, eos)
    prompts = prompts_for(tokenizer)
    torch.manual_seed(0)
    model.train()  # as the trainer leaves it after an update: sampling must switch to eval
    responses, scores = rollouts.sample(model, prompts, with_scores=True)
    assert model.training  # and switch back
    assert scores is not None and all(responses)

    ours, our_entropy, batch = trainer_view(model, prompts, responses, tokenizer.pad_token_id, 0.7)
    sampled, sampled_entropy = sampled_view(scores, batch)
    mask = batch.mask.bool()
    # every token of the vocabulary stays possible: no top-k/top-p truncation leaked in
    assert torch.isfinite(torch.stack(scores[: batch.responses.shape[1]])).all()
    torch.testing.assert_close(sampled[mask], ours[mask], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(sampled_entropy[mask], our_entropy[mask], atol=1e-4, rtol=1e-4)
    # the checkpoint's generation config is back in place afterwards
    assert model.generation_config.repetition_penalty == 1.5


def test_the_checkpoint_defaults_would_change_the_distribution(
    tiny_with_qwen_like_defaults: Path,
) -> None:
    """Control: sampling with the checkpoint's own settings is *not* what PPO scores."""
    from transformers import GenerationConfig

    model, tokenizer = load(tiny_with_qwen_like_defaults)
    prompts = prompts_for(tokenizer)
    ids, mask = left_pad(prompts, tokenizer.pad_token_id, "cpu")
    torch.manual_seed(0)
    config = GenerationConfig(
        do_sample=True, temperature=0.7, max_new_tokens=12, output_scores=True
    )
    config.return_dict_in_generate = True
    out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    responses = [
        cut_at_eos(row, [tokenizer.eos_token_id])
        for row in out.sequences[:, ids.shape[1] :].tolist()
    ]
    ours, _, batch = trainer_view(model, prompts, responses, tokenizer.pad_token_id, 0.7)
    sampled, _ = sampled_view(list(out.scores), batch)
    valid = batch.mask.bool()
    assert not torch.allclose(sampled[valid], ours[valid], atol=1e-3)


def test_dropout_is_really_off(tiny_with_qwen_like_defaults: Path) -> None:
    """Llama keeps its own float ``attention_dropout``: editing the config is not enough."""
    model, tokenizer = load(tiny_with_qwen_like_defaults, attention_dropout=0.5)
    ids, mask = left_pad(prompts_for(tokenizer), tokenizer.pad_token_id, "cpu")
    model.train()

    def logits() -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits

    model.config.attention_dropout = 0.0  # the old fix: no effect on the built modules
    assert not torch.equal(logits(), logits())
    disable_dropout(model)
    assert torch.equal(logits(), logits())


def test_truncated_sampling_is_rejected() -> None:
    from srcode.errors import ConfigError
    from srcode.ppo_config import validate_ppo

    for bad in ({"top_p": 0.9}, {"top_k": 20}):
        with pytest.raises(ConfigError, match="full softmax"):
            validate_ppo(PPORunConfig(**bad))  # type: ignore[arg-type]


def test_cut_at_eos_and_left_pad() -> None:
    assert cut_at_eos([5, 2, 7, 2], [2]) == [5, 2]
    assert cut_at_eos([5, 6], [2]) == [5, 6]
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0, device="cpu")
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
