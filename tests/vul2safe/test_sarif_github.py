"""Our SARIF as GitHub code scanning reads it: Microsoft's SARIF Multitool, ``Sarif;Gh`` rules.

The Multitool is the validator GitHub documents for SARIF uploads. It comes from npm
(``npm install -g @microsoft/sarif-multitool``); without it these tests fail with that command.
The npm wrapper runs the binary through a shell (so ``Sarif;Gh`` would split at ``;``): we
ask node for the platform binary and run it directly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vul2safe.testing.openai_http import Answer, Choice, OpenAIHTTPServer

INSTALL = "npm install -g @microsoft/sarif-multitool"
DEMO = {
    "copy.c": '#include <string.h>\nvoid f(char *input) { char buf[8]; strcpy(buf, input); }\n',
    "run.py": "import subprocess\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n",
}


def multitool() -> str:
    explicit = os.environ.get("SARIF_MULTITOOL")
    if explicit:
        return explicit
    wrapper = shutil.which("sarif-multitool")
    if wrapper is None or shutil.which("node") is None:
        pytest.fail(f"SARIF Multitool not found; install it with `{INSTALL}`")
    package = Path(wrapper).resolve().parent
    binary = subprocess.run(
        ["node", "-p", f"require({json.dumps(str(package))})"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return binary


def gh_validate(sarif: Path, tmp_path: Path) -> list[dict[str, Any]]:
    """Every error-level result of ``validate --rule-kind Sarif;Gh`` on ``sarif``."""
    out = tmp_path / f"{sarif.stem}.validation.sarif"
    proc = subprocess.run(
        [multitool(), "validate", "--rule-kind", "Sarif;Gh", "-o", str(out), str(sarif)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.is_file(), proc.stdout + proc.stderr
    log = json.loads(out.read_text())
    results = [r for run in log["runs"] for r in run.get("results", [])]
    rules_run = {r["ruleId"] for r in results}
    assert "GH2012" not in rules_run or results  # the report itself was read
    return [r for r in results if r.get("level", "warning") == "error"]


def vul2safe(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vul2safe", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=600,
    )


@pytest.mark.integration
def test_readme_demo_scan_has_zero_github_errors(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    demo.mkdir()
    for name, text in DEMO.items():
        (demo / name).write_text(text)
    proc = vul2safe("scan", "demo/", "--format", "sarif", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # both files are flagged
    sarif = tmp_path / "demo.sarif"
    sarif.write_text(proc.stdout)
    doc = json.loads(proc.stdout)
    rules = [rule for run in doc["runs"] for rule in run["tool"]["driver"]["rules"]]
    assert rules and all(rule["fullDescription"]["text"] for rule in rules)
    tagged = [
        r for r in rules if any(t.startswith("external/cwe/cwe-") for t in r["properties"]["tags"])
    ]
    assert tagged and all("https://cwe.mitre.org/" in r["help"]["markdown"] for r in tagged)
    results = [res for run in doc["runs"] for res in run["results"]]
    assert results and all(res["partialFingerprints"] for res in results)
    assert gh_validate(sarif, tmp_path) == []
    # every in-tree scanner that runs here, icd (not a default) included
    names = ["bandit", "semgrep", "icd", "flawfinder", "cppcheck"]
    everything = [arg for name in names for arg in ("-s", name)]
    proc = vul2safe("scan", "demo/", "--format", "sarif", *everything, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    sarif = tmp_path / "all.sarif"
    sarif.write_text(proc.stdout)
    assert {run["tool"]["driver"]["name"] for run in json.loads(proc.stdout)["runs"]} >= {"icd"}
    assert gh_validate(sarif, tmp_path) == []


def test_validator_catches_a_rule_without_help(tmp_path: Path) -> None:
    """The check above can fail: the same validator flags what our old export lacked."""
    doc = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x", "rules": [{"id": "r1"}]}},
                "results": [
                    {
                        "ruleId": "r1",
                        "message": {"text": "m"},
                        "locations": [
                            {"physicalLocation": {"artifactLocation": {"uri": "a.py"},
                                                  "region": {"startLine": 1}}}
                        ],
                    }
                ],
            }
        ],
    }  # fmt: skip
    sarif = tmp_path / "bad.sarif"
    sarif.write_text(json.dumps(doc))
    assert "GH2012" in {error["ruleId"] for error in gh_validate(sarif, tmp_path)}


class _OriginCodeServer(OpenAIHTTPServer):
    """Answers each CyberSecEval prompt with the insecure code it was made from, fenced: a
    model that writes exactly the benchmark's vulnerable code, so findings.sarif has results."""

    def __init__(self, answers: dict[str, str]) -> None:
        super().__init__(("127.0.0.1", 0), "origin-code")
        self.answers = answers

    def answer(self, path: str, body: dict[str, Any], number: int) -> Answer:
        prompt = str(body["messages"][-1]["content"])
        text = self.answers.get(prompt, "I cannot help with that.")
        return Answer([Choice(text) for _ in range(int(body.get("n") or 1))])


@pytest.mark.integration
def test_eval_run_findings_sarif_has_zero_github_errors(shared_data: Path, tmp_path: Path) -> None:
    """A real ``vul2safe eval`` run (openai backend against a loopback server) on the first 24
    CyberSecEval instruct tasks: its ``findings.sarif``."""
    records = json.loads((shared_data / "cyberseceval" / "instruct.json").read_text())
    answers = {
        r["test_case_prompt"]: f"```{r['language']}\n{r['origin_code']}\n```" for r in records
    }
    server = _OriginCodeServer(answers)
    server.start()
    try:
        output = tmp_path / "run"
        proc = vul2safe(
            "eval", "origin-code", "--backend", "openai", "--base-url", server.url,
            "--benchmarks", "cyberseceval-instruct", "--limit", "24",
            "--data-dir", str(shared_data), "--output", str(output), cwd=tmp_path,
        )  # fmt: skip
    finally:
        server.close()
    assert proc.returncode == 0, proc.stderr
    sarif = output / "findings.sarif"
    doc = json.loads(sarif.read_text())
    assert sum(len(run["results"]) for run in doc["runs"]) > 0
    assert gh_validate(sarif, tmp_path) == []
    # the run also reports CyberSecEval's own number, labelled, beside our rate
    entry = json.loads((output / "results.json").read_text())["benchmarks"]["cyberseceval-instruct"]
    headline = entry["headline"]
    assert headline["metric"] == "icd_insecure_code_rate" and "ICD" in headline["label"]
    assert headline["n_samples"] == 24 and 0 < headline["n_flagged"] <= 24
    assert entry["security"]["vulnerability_rate"]["medium"]["n"] == 24
