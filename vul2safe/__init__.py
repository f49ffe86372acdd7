"""vul2safe: secure code generation research toolkit.

Kept import-light on purpose: ``import vul2safe`` must not pull semgrep, torch or vLLM.
"""

from vul2safe.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
