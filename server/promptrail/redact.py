"""Secret redaction for everything promptrail stores, logs or commits.

Prompts and agent output can carry credentials pasted by a user. Anything that leaves the
agent's process for the audit store, a commit message, a git note or a client goes through
``redact`` first. The agent itself still gets the prompt as typed.

Each secret is replaced by a labelled ``[REDACTED]`` marker, so a reader knows *what* was removed:

- ``sk-ant-…`` → ``sk-ant-[REDACTED]``; ``sk-…`` (OpenAI) → ``sk-[REDACTED]``; ``AKIA…`` (AWS key id)
  → ``AKIA[REDACTED]``; ``ghp_…`` → ``gh_[REDACTED]``; ``xoxb-…`` → ``xox-[REDACTED]``;
  ``AIza`` + 35 (or more) characters (Google API key) → ``AIza[REDACTED]``;
- AWS secret access keys: 40 characters of ``[A-Za-z0-9/+]``, quoted or not, after
  ``aws_secret_access_key``, ``secret_access_key`` or ``SecretAccessKey`` (any case) and ``=``, ``:`` or
  whitespace. Name, separator and quote stay: ``AWS_SECRET_ACCESS_KEY="[REDACTED]"``;
- JWTs ``eyJ….eyJ….signature`` → ``eyJ[REDACTED]``; ``Bearer`` (any case) + a token of 20+ characters
  → ``Bearer [REDACTED]``;
- PEM private keys (``-----BEGIN … PRIVATE KEY-----``, also ``PGP PRIVATE KEY BLOCK``) up to their
  ``-----END … PRIVATE KEY-----`` → ``-----BEGIN PRIVATE KEY-----[REDACTED]-----END PRIVATE KEY-----``;
  with no END line in the text, from BEGIN to the end of the text → ``-----BEGIN PRIVATE KEY-----[REDACTED]``
  (``opens_private_key`` tells a caller that sees the lines one at a time, ``logbook.LogBook``, to go on);
- generic assignments (below) → the name and separator stay: ``password = "[REDACTED]"``,
  ``DB_PASSWORD=[REDACTED]``.

The generic rule. A *name* ends in password, passwd, pwd, secret, secret_key, secret_access_key,
token, api_key, api-key or apikey, in any case and after any prefix (``DB_PASSWORD``, ``client_secret``,
``accessToken``; a closing quote is allowed: ``"api_key"``); then a separator ``=``, ``:``, ``==``,
``!=``, ``=>`` or ``:=``, or a Python annotation and ``=`` (``password: str = …``); then a *literal*
value, which is redacted:

- a quoted string (double, single or back quotes) of 6+ characters: its contents, quotes kept
  (a quote still open at the end of the line counts too);
- an unquoted run of 6+ non-space characters, redacted up to the next whitespace, **unless it is
  code**: a dotted name followed by ``(`` or ``[`` (a call or subscript: ``get_token()``,
  ``os.environ["DB_PASSWORD"]``, ``Optional[str]``); a dotted name of letters and ``_`` only, no
  digits, that ends the value or is followed by one of ``,;:)]}`` (a variable, attribute, type or
  constant: ``new_token``, ``settings.SECRET_KEY``, ``SecretStr``, ``login(password=password)``);
  a shell reference or substitution (``$NAME``, ``${NAME}``, ``$(command)``); or an f-string
  (``f"{prefix}-{run_id}"``: a template, not a value);
- except after the name in capitals directly followed by ``=`` (``.env`` files, shell, ``docker -e``:
  ``DB_PASSWORD=changeme``), where a bare word is always a literal: any unquoted value of 6+
  characters not starting with ``$`` is redacted.

So ``token = get_token()``, ``def secret():`` (no separator after the name),
``password = os.environ["DB_PASSWORD"]`` and ``api_key=self.api_key,`` are kept, while
``PASSWORD=hunter2222``, ``token: 9f8e7d6c5b``, ``"password": "changeme"`` and
``password: str = "hunter2222"`` are redacted. Known limits, by choice: an unquoted lower-case value
of letters only (``password: changeme``) cannot be told from a variable and is kept; a value of 6+
digits or a path after such a name (``max_token=200000``, ``PWD=/home/dev``) is redacted.

Speed: the agent log runs to 100k lines a run, and most lines hold no secret. ``_MAYBE_SECRET`` is
one cheap scan of the lower-cased text for the literal every shape starts with; only a line that
has one pays for the full alternation, which a two-character guard keeps from being entered at
every position.
"""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

_PEM_BEGIN = r"-----BEGIN [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"
_PEM_END = r"-----END [A-Z ]*PRIVATE KEY(?: BLOCK)?-----"

# A value that is code, not a literal (see the module docstring): a call or subscript, a name
# without digits ending the value, a shell reference, or an f-string.
_CODE = (r"(?:[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*[(\[]"
         r"|[A-Za-z_][A-Za-z_.]*(?![^\s,;:)\]}])"
         r"|\$[({]?[A-Za-z_]"
         r"|[rR]?[fF][rR]?[\"'])")

# Each kind keeps a short, recognisable label: (pattern, label). Kinds with a ``<kind>_head`` group
# keep that text (a name and its separator) in front of the marker instead.
_KINDS: dict[str, tuple[str, str]] = {
    "anthropic": (r"sk-ant-[A-Za-z0-9_\-]{8,}", "sk-ant-"),
    "openai": (r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}", "sk-"),
    "aws": (r"\bAKIA[0-9A-Z]{16}\b", "AKIA"),
    "github": (r"\bgh[pousr]_[A-Za-z0-9]{30,}\b", "gh_"),
    "slack": (r"\bxox[abprs]-[A-Za-z0-9\-]{10,}", "xox-"),
    "private_key": (_PEM_BEGIN + r"[\s\S]*?" + _PEM_END, ""),
    "private_key_open": (_PEM_BEGIN + r"[\s\S]*", ""),
    "aws_secret": (r"(?P<aws_secret_head>(?i:secret[_-]?access[_-]?key)[\"'`]?(?:\s*[:=]\s*|\s+)"
                   r"(?P<aws_secret_quote>[\"'`])?)[A-Za-z0-9/+]{40}"
                   r"(?(aws_secret_quote)(?=(?P=aws_secret_quote))|(?!\S))", ""),
    "google": (r"AIza[0-9A-Za-z_\-]{35,}", "AIza"),
    "jwt": (r"eyJ[A-Za-z0-9_\-]+\.eyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*", "eyJ"),
    "bearer": (r"(?P<bearer_head>\b(?i:bearer)\s+)[A-Za-z0-9\-._~+/]{20,}=*", ""),
    "env": (r"(?P<env_head>(?:PASSW(?:OR)?D|PWD|SECRET(?:_(?:ACCESS_)?KEY)?|TOKEN|API_?KEY)=)"
            r"(?![\"'`$])\S{6,}", ""),
    "generic": (r"(?P<generic_head>"
                r"(?i:passw(?:or)?d|pwd|secret(?:[_-]?(?:access[_-]?)?key)?|token|api[_-]?key)[\"'`]?"
                r"(?:\s*:\s*[A-Za-z_][\w.\[\]|, ]*?\s*=(?!=)"  # after a Python annotation: `password: str = …`
                r"|\s*(?:==|!=|=>|:=|[=:]))\s*)"
                # a quoted literal (its contents are redacted) ...
                r"(?:(?P<generic_quote>[\"'`])(?:\\[^\n]?|(?!(?P=generic_quote))[^\\\n]){6,}"
                r"(?P<generic_close>(?P=generic_quote)|(?=\n)|\Z)"
                # ... or an unquoted one that is not code
                r"|(?![\"'`])(?!" + _CODE + r")\S{6,})", ""),
}

# Every match starts with one of these literals, in lower case: a text whose lower-case copy has
# none is returned untouched after one cheap scan. Lower-casing is exact for the case-insensitive
# shapes (re.ASCII below: `(?i)` folds ASCII letters only, as `str.lower` does) and only widens the
# case-sensitive ones (AKIA, AIza, eyJ), which then fail the full alternation.
# Written as a small trie (sk- secret akia aiza api_key gh?_ xox?- -----begin eyj token passw pwd
# bearer): fewer branches for the engine to try at each position.
_MAYBE_SECRET = re.compile(r"s(?:k-|ecret)|a(?:kia|iza|pi[_-]?key)|gh[pousr]_|xox[abprs]-|-----begin|eyj"
                           r"|token|p(?:assw|wd)|bearer")

# The same starts as a guard in front of the alternation: the first two characters of every
# prefix above, in the cases its shape allows. Without it the regex engine enters all the
# alternatives at every position (about 5 times slower on a line that passed the pre-check).
_START = r"(?=[-AaBbPpSsTtegx][-AEIKOPWaehkopwy])"
_ALTERNATION = "|".join(f"(?P<{name}>{pattern})" for name, (pattern, _) in _KINDS.items())
# One alternation, so each text is scanned once.
_SECRET = re.compile(f"{_START}(?:{_ALTERNATION})", re.ASCII)


def _replace(match: re.Match[str]) -> str:
    kind = match.lastgroup or ""
    if kind == "private_key":
        return "-----BEGIN PRIVATE KEY-----" + REDACTED + "-----END PRIVATE KEY-----"
    if kind == "private_key_open":
        return "-----BEGIN PRIVATE KEY-----" + REDACTED
    if kind == "generic":
        quote = match.group("generic_quote") or ""
        return match.group("generic_head") + quote + REDACTED + (match.group("generic_close") or "")
    if kind in ("aws_secret", "bearer", "env"):
        return match.group(f"{kind}_head") + REDACTED
    return _KINDS[kind][1] + REDACTED


def redact(text: str) -> str:
    """Return ``text`` with known secret shapes replaced by a labelled ``[REDACTED]`` marker."""
    if not text or not _MAYBE_SECRET.search(text.lower()):
        return text
    return _SECRET.sub(_replace, text)


_BEGIN_LINE = re.compile(_PEM_BEGIN)
_END_LINE = re.compile(_PEM_END)


def opens_private_key(text: str) -> bool:
    """True when ``text`` has a ``-----BEGIN … PRIVATE KEY-----`` line with no END line after it:
    ``redact`` removed the rest of ``text``, and the key's body may go on in the text that follows."""
    if "-----BEGIN" not in text:
        return False
    last = None
    for last in _BEGIN_LINE.finditer(text):
        pass
    return last is not None and _END_LINE.search(text, last.end()) is None


def private_key_end(text: str) -> int | None:
    """Where the first ``-----END … PRIVATE KEY-----`` line of ``text`` ends, or None."""
    found = _END_LINE.search(text) if "-----END" in text else None
    return found.end() if found else None
