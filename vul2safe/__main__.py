"""``python -m vul2safe`` == the ``vul2safe`` console script."""

from vul2safe.cli import main

main()
