"""Secret redaction for everything promptrail stores, logs or commits.

Prompts and agent output can carry credentials pasted by a user. Anything that leaves the
agent's process for the audit store, a commit message, a git note or a client goes through
``redact`` first. The agent itself still gets the prompt as typed.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# Each kind of secret keeps a short, recognisable prefix so a reader knows *what* was removed.
_KINDS: dict[str, tuple[str, str]] = {
    "anthropic": (r"sk-ant-[A-Za-z0-9_\-]{8,}", "sk-ant-"),
    "openai": (r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}", "sk-"),
    "aws": (r"\bAKIA[0-9A-Z]{16}\b", "AKIA"),
    "github": (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "gh_"),
    "slack": (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", "xox-"),
    "private_key": (r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", ""),
}
# One alternation, so each text is scanned once (agent logs run to 100k lines a run).
_SECRET = re.compile("|".join(f"(?P<{name}>{pattern})" for name, (pattern, _) in _KINDS.items()))


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup or ""
    if kind == "private_key":
        return "-----BEGIN PRIVATE KEY-----" + REDACTED + "-----END PRIVATE KEY-----"
    return _KINDS[kind][1] + REDACTED


# Every secret shape starts with one of these literals; a text without any is returned untouched
# after one cheap scan (the full alternation costs ten times more per line).
_MAYBE_SECRET = re.compile(r"sk-|AKIA|gh[pousr]_|xox[abprs]-|-----BEGIN")


def redact(text: str) -> str:
    """Return ``text`` with known secret shapes replaced by a labelled ``[REDACTED]`` marker."""
    if not text or not _MAYBE_SECRET.search(text):
        return text
    return _SECRET.sub(_replace, text)
