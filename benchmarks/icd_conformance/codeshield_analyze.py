"""Run codeshield's own ICD ``analyze`` on snippets (executed by the TOOL environment's Python).

Reads JSON lines ``{"id", "language", "code"}`` on stdin, writes one JSON line per input:
``{"id", "issues": [{"cwe_id", "analyzer", "pattern_id"}], "error"}``. Concurrency 4: each
call starts its own Semgrep process, which is how ICD itself runs.
"""

import asyncio
import json
import sys

from codeshield.insecure_code_detector import insecure_code_detector
from codeshield.insecure_code_detector.languages import Language


async def one(item: dict, gate: asyncio.Semaphore) -> dict:
    async with gate:
        try:
            issues = await insecure_code_detector.analyze(Language(item["language"]), item["code"])
        except Exception as exc:  # recorded, not fatal: codeshield's failures are data here
            return {"id": item["id"], "issues": [], "error": f"{type(exc).__name__}: {exc}"}
    return {
        "id": item["id"],
        "issues": [
            {"cwe_id": i.cwe_id, "analyzer": str(i.analyzer), "pattern_id": i.pattern_id}
            for i in issues
        ],
        "error": None,
    }


async def main() -> None:
    items = [json.loads(line) for line in sys.stdin if line.strip()]
    gate = asyncio.Semaphore(4)
    for result in await asyncio.gather(*(one(item, gate) for item in items)):
        print(json.dumps(result))


asyncio.run(main())
