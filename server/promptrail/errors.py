"""The one exception type that carries a user mistake to a face.

A ``PromptrailError`` is something the user can fix (not a repository, unknown run id, bad
config). The CLI prints its message on one line and exits with code 2; the language server
answers the request with the message. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class PromptrailError(Exception):
    """A clear, one-line, actionable error caused by the user's input or environment."""

    exit_code = 2
