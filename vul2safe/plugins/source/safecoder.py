"""SafeCoder (He et al., ICML 2024): real fixes in 7 languages, each with a task description.

Same JSONL layout as SVEN (:mod:`vul2safe.plugins.source.sven`) plus ``commit_msg``,
``parent_commit`` and ``description`` (a natural-language task for the function, kept in
``metadata`` as a reference for implicit-prompt quality). Some copies store
``line_changes``/``char_changes`` as the Python repr of a dict; those are parsed with
``ast.literal_eval``. A few records have no change lists at all: their metadata says ``None``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from vul2safe import hookimpl
from vul2safe.build.records import RepairPair
from vul2safe.hookspecs import Register
from vul2safe.plugins.source.sven import SvenSource

CITATION = """\
@inproceedings{he2024safecoder,
  title     = {Instruction Tuning for Secure Code Generation},
  author    = {He, Jingxuan and Vero, Mark and Krasnopolska, Gabriela and Vechev, Martin},
  booktitle = {Proceedings of the 41st International Conference on Machine Learning (ICML)},
  year      = {2024},
  note      = {arXiv:2402.09497}
}"""


class SafeCoderSource(SvenSource):
    """SafeCoder's security-fix records (``sec-*.jsonl``) → repair pairs."""

    name: ClassVar[str] = "safecoder"
    description: ClassVar[str] = (
        "SafeCoder: vulnerability fixes in 7 languages and 20+ CWEs, each function with a "
        "task description"
    )
    licence: ClassVar[str] = "MIT"
    homepage: ClassVar[str] = "https://github.com/eth-sri/SafeCoder"
    citation: ClassVar[str] = CITATION
    layout_hint: ClassVar[str] = "a SafeCoder JSONL file (e.g. sec-new-desc-train.jsonl) or folder"

    def add_fields(self, pair: RepairPair, record: dict[str, Any]) -> None:
        pair.commit_message = record.get("commit_msg") or None
        parent = record.get("parent_commit")
        pair.metadata["parent_commit"] = parent or None
        pair.metadata["description"] = record.get("description") or None


@hookimpl
def register_sources(register: Register) -> None:
    register(SafeCoderSource())
