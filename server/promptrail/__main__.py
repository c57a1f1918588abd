"""``python -m promptrail`` is the same as the ``promptrail`` command."""

from promptrail.cli import main

main()
