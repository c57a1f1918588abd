"""promptrail: an audit trail for AI coding agents.

The package is one core with two thin faces:

- ``runs`` orchestrates one run's life (agent -> commit -> audit) and ``queries`` answers
  questions about past runs; both speak in the typed events of ``events``.
- ``cli`` (terminal) and ``lsp`` (editors) only translate those calls and events.
"""

__version__ = "0.1.0"
