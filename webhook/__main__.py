"""``python -m webhook`` is ``nodelimits`` (and its help and version say so)."""

from webhook.cli import PROG_NAME, main

main(prog_name=PROG_NAME)
