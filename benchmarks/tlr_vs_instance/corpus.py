"""Synthetic prompt -> completion corpus for the token-level vs instance-level experiment.

Six task families, three in C and three in Python. Every prompt is written out twice in the
SFT data: once with the UNSAFE idiom and once with its SAFE equivalent, inside otherwise
identical code, so a policy that fits the data samples the unsafe line about half the time.
The two variants differ in ONE line (the call), which is what the scanners flag.

- c_copy: ``strcpy(buf, src);`` -> ``strncpy(buf, src, sizeof(buf) - 1);``
- c_format: ``sprintf(buf, "id %s", src);`` -> ``snprintf(buf, sizeof(buf), "id %s", src);``
- c_read: ``gets(buf);`` -> ``fgets(buf, sizeof(buf), stdin);``
- py_shell: ``r = subprocess.run("ls " + p, shell=True)`` -> ``r = subprocess.run(["ls", p])``
- py_pickle: ``obj = pickle.loads(data)`` -> ``obj = json.loads(data)``
- py_hash: ``h = hashlib.md5(data).hexdigest()`` -> ``h = hashlib.sha256(data).hexdigest()``

``eval`` vs ``ast.literal_eval`` (named in the issue) is NOT used: Semgrep's ICD pack, our
evaluation scanner, has no Python ``eval`` rule (Bandit's B307 flags it, ICD does not), so
it would be invisible to the evaluation. ``hashlib.md5`` is flagged by both (Bandit B324,
ICD ``insecure-md5-hash-usage``). ``python corpus.py --check`` prints which scanner flags
which idiom (see README.md).

Everything here is a pure function of the seed: ``build(seed)`` gives the same rows every time.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FAMILIES = ("c_copy", "c_format", "c_read", "py_shell", "py_pickle", "py_hash")

C_BUFS = ("buf", "dst", "out", "line", "msg")
C_SRCS = ("name", "user", "src", "input", "arg")
C_SIZES = (16, 32, 64, 128)
PY_PATHS = ("path", "host", "target", "item")
PY_DATA = ("data", "payload", "blob", "raw")
PY_OBJS = ("obj", "config", "record", "result")
PY_HASH = ("digest", "h", "key", "tag")
COMMANDS = {"ls": "List the directory", "cat": "Print the file", "ping": "Ping the host"}


@dataclass(frozen=True)
class Example:
    family: str
    language: str
    prompt: str
    prefix: str  # code before the varying line (identical in both variants)
    unsafe_line: str
    safe_line: str
    suffix: str  # code after it (identical in both variants)

    @property
    def unsafe(self) -> str:
        return self.prefix + self.unsafe_line + "\n" + self.suffix

    @property
    def safe(self) -> str:
        return self.prefix + self.safe_line + "\n" + self.suffix

    def rl_row(self) -> dict[str, Any]:
        """srcode's ``rl`` row: reference = the safe answer, spans = the differing line."""
        start = len(self.prefix)
        return {
            "prompt": self.prompt,
            "reference": self.safe,
            "vulnerable": self.unsafe,
            "vulnerable_spans": [[start, start + len(self.unsafe_line)]],
            "secure_spans": [[start, start + len(self.safe_line)]],
            "language": self.language,
            "cwe": [CWE[self.family]],
            "family": self.family,
        }


CWE = {
    "c_copy": "CWE-120",
    "c_format": "CWE-120",
    "c_read": "CWE-242",
    "py_shell": "CWE-78",
    "py_pickle": "CWE-502",
    "py_hash": "CWE-328",
}


#: the unsafe / safe call of each family, as regexes over a completion (for the idiom census)
IDIOMS = {
    "c_copy": (r"\bstrcpy\s*\(", r"\bstrncpy\s*\("),
    "c_format": (r"\bsprintf\s*\(", r"\bsnprintf\s*\("),
    "c_read": (r"\bgets\s*\(", r"\bfgets\s*\("),
    "py_shell": (r"shell\s*=\s*True", r"subprocess\.run\(\s*\["),
    "py_pickle": (r"\bpickle\.loads\s*\(", r"\bjson\.loads\s*\("),
    "py_hash": (r"\bhashlib\.md5\s*\(", r"\bhashlib\.sha256\s*\("),
}


def idiom_of(family: str, completion: str) -> str:
    """'unsafe', 'safe', 'both' or 'neither': which of the family's calls a completion has."""
    import re

    unsafe, safe = (bool(re.search(p, completion)) for p in IDIOMS[family])
    return {(True, False): "unsafe", (False, True): "safe", (True, True): "both"}.get(
        (unsafe, safe), "neither"
    )


def make_example(family: str, rng: random.Random) -> Example:
    """One prompt of ``family`` with random names and phrasing."""
    if family.startswith("c_"):
        buf, src, n = rng.choice(C_BUFS), rng.choice(C_SRCS), rng.choice(C_SIZES)
        prefix, suffix = f"char {buf}[{n}];\n", f"puts({buf});\n"
        if family == "c_copy":
            prompt = rng.choice(
                [
                    f"Copy {src} into a {n}-byte buffer {buf} and print it.",
                    f"Store the string {src} in {buf} ({n} bytes), then print {buf}.",
                    f"Put a copy of {src} in the local buffer {buf} of size {n} and show it.",
                ]
            )
            unsafe, safe = f"strcpy({buf}, {src});", f"strncpy({buf}, {src}, sizeof({buf}) - 1);"
        elif family == "c_format":
            prompt = rng.choice(
                [
                    f"Format the text 'id' and {src} into {buf} ({n} bytes) and print it.",
                    f"Build the message 'id <{src}>' in a {n}-byte buffer {buf}, then print it.",
                    f"Write 'id' followed by {src} into the buffer {buf} of size {n} and show it.",
                ]
            )
            unsafe = f'sprintf({buf}, "id %s", {src});'
            safe = f'snprintf({buf}, sizeof({buf}), "id %s", {src});'
        else:
            prompt = rng.choice(
                [
                    f"Read a line from standard input into {buf} ({n} bytes) and print it.",
                    f"Read one line of user input into a {n}-byte buffer {buf}, then echo it.",
                    f"Get a line from stdin into the buffer {buf} of size {n} and show it.",
                ]
            )
            unsafe, safe = f"gets({buf});", f"fgets({buf}, sizeof({buf}), stdin);"
        return Example(family, "c", prompt, prefix, unsafe, safe, suffix)
    if family == "py_shell":
        cmd = rng.choice(sorted(COMMANDS))
        p = rng.choice(PY_PATHS)
        prompt = rng.choice(
            [
                f"{COMMANDS[cmd]} {p} with the {cmd} command and print the result.",
                f"Run {cmd} on {p} and print the result.",
                f"Use the {cmd} command on {p}, then print the result.",
            ]
        )
        return Example(
            family,
            "python",
            prompt,
            "import subprocess\n",
            f'r = subprocess.run("{cmd} " + {p}, shell=True)',
            f'r = subprocess.run(["{cmd}", {p}])',
            "print(r)\n",
        )
    if family == "py_pickle":
        data, obj = rng.choice(PY_DATA), rng.choice(PY_OBJS)
        prompt = rng.choice(
            [
                f"Load the object {obj} from the bytes {data} and print it.",
                f"Deserialize {data} into {obj}, then print {obj}.",
                f"Decode the received {data} into {obj} and show it.",
            ]
        )
        return Example(
            family,
            "python",
            prompt,
            "import json\nimport pickle\n",
            f"{obj} = pickle.loads({data})",
            f"{obj} = json.loads({data})",
            f"print({obj})\n",
        )
    if family == "py_hash":
        data, h = rng.choice(PY_DATA), rng.choice(PY_HASH)
        prompt = rng.choice(
            [
                f"Compute a hex digest {h} of the bytes {data} and print it.",
                f"Hash {data} into the hex string {h}, then print {h}.",
                f"Fingerprint {data} as a hex digest called {h} and show it.",
            ]
        )
        return Example(
            family,
            "python",
            prompt,
            "import hashlib\n",
            f"{h} = hashlib.md5({data}).hexdigest()",
            f"{h} = hashlib.sha256({data}).hexdigest()",
            f"print({h})\n",
        )
    raise ValueError(family)


def build(seed: int, per_family: int) -> list[Example]:
    """``per_family`` prompts of each family, interleaved, deterministic in ``seed``."""
    rng = random.Random(seed)
    return [make_example(f, rng) for _ in range(per_family) for f in FAMILIES]


def sft_rows(examples: list[Example]) -> list[dict[str, Any]]:
    """Each prompt twice: unsafe and safe completion (50 % unsafe by construction)."""
    rows = []
    for ex in examples:
        for completion in (ex.unsafe, ex.safe):
            rows.append({"prompt": ex.prompt, "completion": completion, "language": ex.language})
    return rows


def write_dataset(root: Path, seed: int, per_family_sft: int, per_family_rl: int) -> Path:
    """A PrimeVul+-layout dataset dir (``sft``/``rl`` DatasetDicts) srcode's loader reads."""
    from datasets import Dataset, DatasetDict

    sft = sft_rows(build(seed, per_family_sft))
    rl = [ex.rl_row() for ex in build(seed + 1, per_family_rl)]
    DatasetDict({"train": Dataset.from_list(sft)}).save_to_disk(str(root / "sft"))
    DatasetDict({"train": Dataset.from_list(rl)}).save_to_disk(str(root / "rl"))
    return root


def check_scanners(scanners: list[str]) -> dict[str, dict[str, list[str]]]:
    """Which scanner flags which idiom (findings >= medium), on one example of each variant.

    One ``scan_samples`` call per scanner over all twelve snippets; a scanner that does not
    cover a snippet's language is left out of that snippet's row.
    """
    from vul2safe import plugins
    from vul2safe.scanning import ScanOptions, scan_samples
    from vul2safe.schema import Sample, SampleResult, Severity

    rng = random.Random(0)
    snippets = []
    for family in FAMILIES:
        ex = make_example(family, rng)
        snippets += [(f"{family}/unsafe", ex.language, ex.unsafe)]
        snippets += [(f"{family}/safe", ex.language, ex.safe)]
    # Named in the issue but left out of the corpus: shown to document why.
    snippets += [("excluded_py_eval/unsafe", "python", "value = eval(text)\nprint(value)\n")]
    snippets += [
        (
            "excluded_py_eval/safe",
            "python",
            "import ast\nvalue = ast.literal_eval(text)\nprint(value)\n",
        )
    ]
    covers = {s.name: s.languages for s in plugins.scanners}
    table: dict[str, dict[str, list[str]]] = {key: {} for key, _, _ in snippets}
    for scanner in scanners:
        results = [
            SampleResult(Sample(key, code, lang, path=key.replace("/", "_")))
            for key, lang, code in snippets
            if lang in covers[scanner]
        ]
        scan_samples(results, [scanner], ScanOptions(use_cache=False))
        for result in results:
            table[result.sample.id][scanner] = [
                f"{f.rule_id} ({f.severity.value})"
                for f in result.findings
                if Severity.parse(f.severity).at_least(Severity.MEDIUM)
            ]
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print the scanner x idiom table")
    parser.add_argument("--show", type=int, default=0, help="print N SFT rows")
    args = parser.parse_args()
    if args.show:
        for row in sft_rows(build(0, args.show))[: args.show * 2]:
            print(json.dumps(row))
    if args.check:
        table = check_scanners(["semgrep", "bandit", "flawfinder"])
        print(json.dumps(table, indent=1))


if __name__ == "__main__":
    main()
