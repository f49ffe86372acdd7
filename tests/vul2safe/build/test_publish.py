"""The publish stage: the card parses, files reload, and the Hub push fails in one line offline."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from vul2safe.build import BuildContext
from vul2safe.build.assemble import AssembleConfig, assign_splits, build_dataset
from vul2safe.build.publish import (
    PublishConfig,
    PublishError,
    card_context,
    check_hub_ready,
    data_files,
    push_dataset,
    render_card,
    run_stage,
    save_dataset,
    validate_card,
)
from vul2safe.build.records import RepairPair
from vul2safe.build.source import load_sources


@pytest.fixture(scope="module")
def pairs(shared_data: Path) -> list[RepairPair]:
    """Real SafeCoder pairs with the fields the earlier stages would have filled."""
    loaded = load_sources([f"safecoder:{shared_data / 'safecoder'}"], limit=40)
    ready = []
    for pair in loaded:
        ready.append(
            replace(
                pair,
                reflection={"verdict": True, "confidence": 1.0, "reasons": ["3 of 3"]},
                spans={"vulnerable_spans": [[0, 5]], "secure_spans": [[0, 7]]},
                prompts=[
                    {"style": "task", "text": f"Write {pair.func_name}.", "source": "test"},
                    {"style": "docstring", "text": f"Document {pair.func_name}.", "source": "t"},
                ],
            )
        )
    return assign_splits(ready, AssembleConfig())


def _context(built, pairs, **kw):  # type: ignore[no-untyped-def]
    return card_context(built, pairs, config=PublishConfig(build_note="A test build."), **kw)


def test_card_renders_parses_and_lists_configs(pairs: list[RepairPair]) -> None:
    from huggingface_hub import DatasetCard

    built = build_dataset(pairs)
    stages = [{"stage": "reflect", "pairs_in": 50, "kept": 40, "dropped": 10,
               "drop_reasons": {"teacher judged the fix incorrect": 10}}]  # fmt: skip
    context = _context(built, pairs, stages=stages, teacher={"backend": "openai", "model": "m"})
    text = render_card(built, context, layout="hub")
    data = DatasetCard(text).data.to_dict()
    assert data["license"] == "mit" and "text-generation" in data["task_categories"]
    names = [c["config_name"] for c in data["configs"]]
    assert names == ["pairs", "sft", "rl", "eval"]
    sft = next(c for c in data["configs"] if c["config_name"] == "sft")
    assert {"split": "train", "path": "sft/train-*"} in sft["data_files"]
    languages = {p.language for p in pairs}
    assert languages <= set(data["tags"])
    assert "A test build." in text
    assert "teacher judged the fix incorrect (10)" in text
    assert "model: `m`" in text
    for cwe in {c for p in pairs for c in p.cwe}:
        assert f"| {cwe} |" in text
    local = render_card(built, context, layout="local")
    local_sft = next(
        c for c in DatasetCard(local).data.to_dict()["configs"] if c["config_name"] == "sft"
    )
    assert {"split": "train", "path": "parquet/sft/train.parquet"} in local_sft["data_files"]


def test_broken_card_does_not_ship() -> None:
    with pytest.raises(PublishError, match="does not parse"):
        validate_card("---\nlicense: [mit\n---\n# x\n")
    with pytest.raises(PublishError, match="no configs"):
        validate_card("---\nlicense: mit\n---\n# x\n")


def test_save_dataset_reloads_from_disk_parquet_and_folder(
    pairs: list[RepairPair], tmp_path: Path
) -> None:
    import datasets

    built = build_dataset(pairs)
    save_dataset(built, tmp_path)
    context = _context(built, pairs)
    (tmp_path / "README.md").write_text(render_card(built, context, layout="local"))
    for name, original in built.items():
        reloaded = datasets.load_from_disk(str(tmp_path / "dataset" / name))
        assert {s: d.num_rows for s, d in reloaded.items()} == {
            s: d.num_rows for s, d in original.items()
        }
        for split in original:
            assert (tmp_path / "parquet" / name / f"{split}.parquet").is_file()
    # the output folder is a loadable dataset by itself, offline, through its card
    rl = datasets.load_dataset(str(tmp_path), "rl")
    assert rl["train"].num_rows == built["rl"]["train"].num_rows
    assert rl["train"][0]["secure_spans"] == [[0, 7]]
    # saving again replaces the old copy
    save_dataset(built, tmp_path)
    assert datasets.load_from_disk(str(tmp_path / "dataset" / "sft"))["train"].num_rows > 0


def test_data_files_skip_empty_configs(pairs: list[RepairPair]) -> None:
    train_only = [replace(p, split="train") for p in pairs]
    built = build_dataset(train_only)
    assert [c["config_name"] for c in data_files(built, "hub")] == ["pairs", "sft", "rl"]


def test_push_offline_fails_in_one_line(pairs: list[RepairPair]) -> None:
    built = build_dataset(pairs)
    with pytest.raises(PublishError) as info:
        push_dataset(built, "---\nconfigs: []\n---\n", "someone/primevul-plus", private=True)
    message = str(info.value)
    assert "offline" in message and "HF_HUB_OFFLINE" in message and "\n" not in message


def test_push_needs_a_token_and_a_repo_id(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(tmp_path / "no-token"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    with pytest.raises(PublishError, match="OWNER/NAME"):
        check_hub_ready("not-a-repo-id")
    with pytest.raises(PublishError, match="not logged in"):
        check_hub_ready("someone/primevul-plus")


def test_run_stage_writes_everything(pairs: list[RepairPair], tmp_path: Path) -> None:
    from huggingface_hub import DatasetCard

    from vul2safe.build.config import load_config

    config = load_config(None, {"publish": {"build_note": "unit test"}})
    result = run_stage(list(pairs), BuildContext(output=tmp_path, config=config))
    assert len(result.kept) == len(pairs) and not result.dropped
    assert set(result.stats["configs"]) == {"pairs", "sft", "rl", "eval"}
    for card in ("README.md", "card.hub.md"):
        assert DatasetCard((tmp_path / card).read_text()).data.to_dict()["configs"]
    assert (tmp_path / "dataset" / "eval" / "dataset_dict.json").is_file()


def test_push_pushes_each_config_then_the_card(
    pairs: list[RepairPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The network boundary replaced by recorders: what would be sent, in which order."""
    import datasets
    from huggingface_hub import DatasetCard

    from vul2safe.build import publish

    calls: list[tuple[str, dict[str, object]]] = []
    monkeypatch.setattr(publish, "check_hub_ready", lambda repo: calls.append(("ready", {})))

    def fake_push(self: datasets.DatasetDict, repo_id: str, **kw: object) -> None:
        calls.append(("push", {"repo": repo_id, "splits": sorted(self), **kw}))

    remote = DatasetCard("---\ndataset_info:\n- config_name: sft\n  splits: []\n---\n")
    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", fake_push)
    monkeypatch.setattr(DatasetCard, "load", classmethod(lambda cls, *a, **k: remote))
    monkeypatch.setattr(
        DatasetCard,
        "push_to_hub",
        lambda self, repo, **kw: calls.append(("card", {"text": str(self)})),
    )
    built = build_dataset([replace(p, split="train") for p in pairs])
    card = render_card(built, _context(built, pairs), layout="hub")
    url = push_dataset(built, card, "me/primevul-plus", private=True)
    assert url == "https://huggingface.co/datasets/me/primevul-plus"
    pushes = [kw for kind, kw in calls if kind == "push"]
    assert [p["config_name"] for p in pushes] == ["pairs", "sft", "rl"]  # empty eval skipped
    assert all(p["private"] is True and p["repo"] == "me/primevul-plus" for p in pushes)
    assert calls[0][0] == "ready" and calls[-1][0] == "card"
    sent = DatasetCard(str(calls[-1][1]["text"])).data.to_dict()
    assert sent["dataset_info"] == [{"config_name": "sft", "splits": []}]
    assert [c["config_name"] for c in sent["configs"]] == ["pairs", "sft", "rl"]


def test_push_failure_is_one_line(pairs: list[RepairPair], monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    from vul2safe.build import publish

    monkeypatch.setattr(publish, "check_hub_ready", lambda repo: None)

    def refuse(self: datasets.DatasetDict, repo_id: str, **kw: object) -> None:
        raise RuntimeError("403 Forbidden: you cannot write to me/primevul-plus\nmore detail")

    monkeypatch.setattr(datasets.DatasetDict, "push_to_hub", refuse)
    built = build_dataset(pairs)
    with pytest.raises(PublishError) as info:
        push_dataset(built, render_card(built, _context(built, pairs)), "me/x", private=False)
    assert str(info.value) == (
        "push to me/x failed: RuntimeError: 403 Forbidden: you cannot write to me/primevul-plus"
    )
