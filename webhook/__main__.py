"""``python -m webhook`` is ``nodelimits``."""

from webhook.cli import main

main()
