"""Secret redaction for everything promptrail stores, logs or commits.

Prompts and agent output can carry credentials pasted by a user. Anything that leaves the
agent's process for the audit store, a commit message, a git note or a client goes through
``redact`` first. The agent itself still gets the prompt as typed.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# Each pattern keeps a short, recognisable prefix so a reader knows *what* was removed.
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"sk-ant-[A-Za-z0-9_\-]{8,}"), "sk-ant-" + REDACTED),
    (re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}"), "sk-" + REDACTED),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "AKIA" + REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"), "gh_" + REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"), "xox-" + REDACTED),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
     "-----BEGIN PRIVATE KEY-----" + REDACTED + "-----END PRIVATE KEY-----"),
]


def redact(text: str) -> str:
    """Return ``text`` with known secret shapes replaced by a labelled ``[REDACTED]`` marker."""
    if not text:
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
