"""The installed example plugin is found through its entry point and scans for real."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_entry_point_plugin_is_listed_and_scans(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = {row["name"]: row for row in json.loads(proc.stdout)}
    assert rows["secrets"]["provides"] == {"scanner": ["secrets"]}
    assert rows["secrets"]["distribution"]["name"] == "vul2safe-secrets-scanner"

    (tmp_path / "settings.py").write_text('DB_PASSWORD = "hunter22"\nDEBUG = False\n')
    proc = subprocess.run(
        [sys.executable, "-m", "vul2safe", "scan", str(tmp_path), "-s", "secrets", "-f", "json"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert [(f["rule_id"], f["start_line"], f["cwe"]) for f in result["findings"]] == [
        ("hardcoded-password", 1, ["CWE-798"])
    ]
