"""``promptrail review RUN``: a model judges a run's diff against the prose of CLAUDE.md.

The rule blocks of CLAUDE.md are checked by machine on every run (``run_check``); most of what a
CLAUDE.md says is prose no regex can check ("keep functions small", "never log a token"). This
module owns the second opinion on that prose:

- the request: the **base** commit's CLAUDE.md files (the rules the run was made under, as
  ``run_check`` uses them), each labelled with the subtree it governs, and ``git show`` of the
  run's commit, asking for JSON findings ``{file, line, rule, why, severity}`` where ``rule``
  quotes CLAUDE.md word for word;
- the call through the ``anthropic`` SDK (imported lazily: about 2 s of start-up), honouring
  ``ANTHROPIC_API_KEY`` (or ``ANTHROPIC_AUTH_TOKEN``) and ``ANTHROPIC_BASE_URL``;
- strict validation of the reply: anything but the JSON asked for (an object whose only key is
  ``findings``, each finding exactly those five keys with the right types) is one clear
  ``PromptrailError`` and nothing is stored. The one leniency: a reply wrapped in a single
  Markdown code fence is unwrapped, since models add one even when told not to;
- storing: the findings become the run's violations with source ``CLAUDE.md (review)`` (the rule
  check's violations stay; an earlier review's are replaced), together with a ``run.reviewed``
  feed event that keeps every finding, in one transaction.

A finding maps onto a violation row as: ``file`` → path, ``line`` → line, ``rule`` (the quote) →
rule_id, ``why`` → message, ``severity``; ``rule_file``/``rule_line`` say where the quote stands in
the base commit's CLAUDE.md files (None when the model paraphrased). Columns are 0: a review
judges lines, not characters.
"""

from __future__ import annotations

import importlib
import json
import posixpath
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from promptrail.errors import PromptrailError
from promptrail.redact import redact
from promptrail.standards.rules import SEVERITIES

REVIEW_SOURCE = "CLAUDE.md (review)"
EVENT = "run.reviewed"
MAX_TOKENS = 8192
#: Beyond these the diff (or CLAUDE.md) is cut, and the model is told so: a review of most of a
#: huge change beats a request the API refuses.
MAX_DIFF_CHARS = 300_000
MAX_CLAUDE_MD_CHARS = 150_000
REQUEST_TIMEOUT_S = 300.0
MAX_RETRIES = 2
FINDING_KEYS = ("file", "line", "rule", "why", "severity")
MISSING_KEY = "promptrail review needs an API key: set ANTHROPIC_API_KEY (or ANTHROPIC_AUTH_TOKEN)"
NOTHING_STORED = "nothing was stored"

SYSTEM_PROMPT = """\
You review a change that an AI coding agent made to a repository, against the project's written \
conventions: its CLAUDE.md files, quoted below. Report only clear violations of something a \
CLAUDE.md actually says. A nested CLAUDE.md applies only to its own folder. Fenced blocks marked \
```promptrail are machine-checked separately: do not report what they cover.

Answer with JSON only: no prose before or after it, no code fence. Exactly this shape:
{"findings": [{"file": "path/as/in/the/diff", "line": 12, "rule": "the words of CLAUDE.md you rely \
on, quoted exactly", "why": "what in the change breaks it, in one or two sentences", "severity": \
"warning"}]}

- file: the repository-relative path as the diff names it.
- line: the 1-based line in the new version of the file (1 for a deleted file or a finding about \
the whole file).
- rule: copied word for word from one CLAUDE.md; do not paraphrase.
- severity: "error" (clearly forbidden), "warning" (against the conventions), "info" or "hint".
- Nothing to report: {"findings": []}

The CLAUDE.md files of the commit the change started from:
"""


@dataclass(frozen=True)
class Finding:
    file: str
    line: int
    rule: str
    why: str
    severity: str
    #: Where the quoted rule stands in the base commit's CLAUDE.md files (None: not found verbatim).
    rule_file: str | None = None
    rule_line: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "rule": self.rule, "why": self.why,
                "severity": self.severity, "rule_file": self.rule_file, "rule_line": self.rule_line}

    def as_violation(self) -> dict[str, Any]:
        return {"rule_id": self.rule, "path": self.file, "line": self.line, "start_col": 0, "end_col": 0,
                "severity": self.severity, "message": self.why, "source": REVIEW_SOURCE,
                "rule_file": self.rule_file, "rule_line": self.rule_line}


@dataclass
class Review:
    """One stored review of a run."""

    run_id: str
    commit: str
    base: str | None
    model: str
    findings: list[Finding]
    claude_md: list[str]
    diff_truncated: bool = False
    tokens: dict[str, int | None] = field(default_factory=dict)
    cost_usd: float | None = None

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for finding in self.findings:
            counts[finding.severity] += 1
        return counts

    @property
    def has_errors(self) -> bool:
        return any(finding.severity == "error" for finding in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "commit": self.commit, "base": self.base, "model": self.model,
                "source": REVIEW_SOURCE, "findings": [f.as_dict() for f in self.findings], "counts": self.counts(),
                "claude_md": self.claude_md, "diff_truncated": self.diff_truncated, "tokens": self.tokens,
                "cost_usd": self.cost_usd}


# -- the request ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReviewRequest:
    run_id: str
    commit: str
    base: str | None
    model: str
    system: str
    prompt: str
    claude_md: dict[str, str]
    diff_truncated: bool


def _governs(path: str) -> str:
    folder = posixpath.dirname(path)
    return "the whole repository" if not folder else f"{folder}/ and below"


def _cut(text: str, limit: int, what: str) -> tuple[str, bool]:
    if len(text) <= limit:
        return text, False
    return text[:limit] + f"\n[… {what} cut here: {len(text) - limit} more characters not shown …]\n", True


def build_request(workspace: Any, run_ref: str, model: str | None = None) -> ReviewRequest:
    """What to ask about run ``run_ref``; every problem with the run itself is a ``PromptrailError``."""
    from promptrail.standards.check import commit_claude_md_texts

    store, repo = workspace.store, workspace.repo
    run_id = store.resolve_run_id(run_ref)
    row = store.get_run(run_id)
    assert row is not None
    commit = row.get("commit_sha")
    if not commit:
        raise PromptrailError(f"run {run_id} has no commit (status: {row.get('status')}); "
                              "there is no change to review")
    base = row.get("base_sha")
    claude_md = commit_claude_md_texts(repo, base) if base else {}
    if not claude_md:
        where = f"base commit {base[:12]}" if base else "empty repository"
        raise PromptrailError(f"the {where} of run {run_id} has no CLAUDE.md; there is nothing to review "
                              "the change against")
    ordered = sorted(claude_md, key=lambda path: (path.count("/"), path))
    sections, budget = [], MAX_CLAUDE_MD_CHARS
    for path in ordered:
        text, _ = _cut(claude_md[path], max(budget, 0), path)
        budget -= len(claude_md[path])
        sections.append(f"=== {path} (applies to {_governs(path)}) ===\n{text.rstrip()}\n=== end of {path} ===")
    show = repo.run("show", "--format=fuller", "--patch", "--find-renames", "--no-color", "--no-ext-diff",
                    "--no-textconv", commit)
    if not show.ok:
        raise PromptrailError(f"cannot read commit {commit[:12]} of run {run_id}: {show.output}")
    diff, truncated = _cut(show.stdout, MAX_DIFF_CHARS, "the diff")
    prompt = (f"Review this change (run {run_id}, commit {commit}"
              + (", shown only in part: it is too long" if truncated else "")
              + f"):\n\n{diff}")
    chosen = model or workspace.config.agent.model or default_model()
    return ReviewRequest(run_id, commit, base, chosen, SYSTEM_PROMPT + "\n" + "\n\n".join(sections), prompt,
                         {path: claude_md[path] for path in ordered}, truncated)


def default_model() -> str:
    from promptrail.agents.anthropic_api import DEFAULT_MODEL

    return DEFAULT_MODEL


# -- the reply ---------------------------------------------------------------------------------------
_FENCE = re.compile(r"\A\s*(`{3,}|~{3,})[ \t]*(?:json)?[ \t]*\n(?P<body>.*)\n[ \t]*\1[ \t]*\s*\Z", re.DOTALL)


class BadReply(PromptrailError):
    """The model answered, but not with the JSON asked for."""


def _shape(detail: str) -> BadReply:
    return BadReply(f"the model's review reply is not the expected JSON shape: {detail}; {NOTHING_STORED}")


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_findings(text: str) -> list[dict[str, Any]]:
    """The findings of a reply, validated; ``BadReply`` (one line, naming the first problem) otherwise."""
    fenced = _FENCE.match(text)
    body = fenced.group("body") if fenced else text
    if not body.strip():
        raise BadReply(f"the model's review reply is empty; {NOTHING_STORED}")
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadReply(f"the model's review reply is not valid JSON ({exc.msg} at line {exc.lineno}, "
                       f"column {exc.colno}); {NOTHING_STORED}") from None
    except RecursionError:
        raise BadReply(f"the model's review reply is not valid JSON (nested too deeply); {NOTHING_STORED}") from None
    if not isinstance(data, dict) or set(data) != {"findings"}:
        raise _shape('the reply must be an object whose only key is "findings"')
    findings = data["findings"]
    if not isinstance(findings, list):
        raise _shape('"findings" must be a list')
    valid = []
    for number, finding in enumerate(findings):
        where = f"findings[{number}]"
        if not isinstance(finding, dict):
            raise _shape(f"{where} must be an object")
        unknown = [key for key in finding if key not in FINDING_KEYS]
        if unknown:
            raise _shape(f"{where} has an unknown key {_describe(unknown[0])}")
        missing = [key for key in FINDING_KEYS if key not in finding]
        if missing:
            raise _shape(f"{where} lacks {_describe(missing[0])}")
        path, line, severity = finding["file"], finding["line"], finding["severity"]
        if not isinstance(path, str) or not path.strip():
            raise _shape(f"{where}.file must be a non-empty string, not {_describe(path)}")
        parts = path.replace("\\", "/").split("/")
        if path.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", path):
            raise _shape(f"{where}.file must be a path inside the repository, not {_describe(path)}")
        if isinstance(line, bool) or not isinstance(line, int) or line < 1:
            raise _shape(f"{where}.line must be a whole number of at least 1, not {_describe(line)}")
        for key in ("rule", "why"):
            if not isinstance(finding[key], str) or not finding[key].strip():
                raise _shape(f"{where}.{key} must be a non-empty string, not {_describe(finding[key])}")
        if severity not in SEVERITIES:
            raise _shape(f"{where}.severity must be one of {', '.join(SEVERITIES)}, not {_describe(severity)}")
        valid.append(finding)
    return valid


_BULLET = re.compile(r"^(?:[-*+>]|\d+[.)]|#+)\s+")


def _flat(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").split())


def locate_quote(quote: str, files: Mapping[str, str]) -> tuple[str | None, int | None]:
    """(CLAUDE.md path, 1-based line) where ``quote`` begins, ignoring whitespace, Markdown emphasis
    and list markers; (None, None) when no file has it verbatim."""
    lines = [_flat(_BULLET.sub("", line.strip())) for line in quote.strip().splitlines()]
    first = next((line for line in lines if line), "")
    if len(first) < 3:
        return None, None
    for path, text in files.items():
        for number, line in enumerate(re.split(r"\r\n|\r|\n", text), 1):
            if first in _flat(line):
                return path, number
    return None, None


# -- asking ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Answer:
    text: str
    stop_reason: str | None
    input_tokens: int | None
    output_tokens: int | None


def _credentials(env: Mapping[str, str] | None) -> tuple[str | None, str | None, str | None]:
    from promptrail.agents.anthropic_api import credentials

    return credentials(dict(env) if env is not None else None)


def ask(request: ReviewRequest, env: Mapping[str, str] | None = None) -> Answer:
    """One Messages API call (no streaming: the reply is small). API failures are one-line errors."""
    api_key, auth_token, base_url = _credentials(env)
    if not api_key and not auth_token:
        raise PromptrailError(MISSING_KEY)
    try:
        sdk = importlib.import_module("anthropic")
    except ImportError as exc:
        raise PromptrailError(f"promptrail review needs the anthropic package ({exc}); "
                              "`pip install anthropic`") from None
    client = sdk.Anthropic(api_key=api_key, auth_token=None if api_key else auth_token, base_url=base_url,
                           max_retries=MAX_RETRIES, timeout=REQUEST_TIMEOUT_S)
    try:
        message = client.messages.create(model=request.model, max_tokens=MAX_TOKENS,
                                         system=request.system,
                                         messages=[{"role": "user", "content": request.prompt}])
    except sdk.APIStatusError as exc:
        raise PromptrailError(_status_error(exc)) from None
    except sdk.APITimeoutError:
        raise PromptrailError(f"the Anthropic API at {base_url or 'https://api.anthropic.com'} did not answer "
                              f"within {REQUEST_TIMEOUT_S:g} s; {NOTHING_STORED}") from None
    except sdk.APIConnectionError as exc:
        cause = exc.__cause__ or exc.__context__ or exc
        raise PromptrailError(f"could not reach the Anthropic API at {base_url or 'https://api.anthropic.com'}: "
                              f"{cause}; {NOTHING_STORED}") from None
    finally:
        client.close()
    text = "".join(getattr(block, "text", "") for block in message.content if getattr(block, "type", "") == "text")
    usage = getattr(message, "usage", None)
    return Answer(text, getattr(message, "stop_reason", None), getattr(usage, "input_tokens", None),
                  getattr(usage, "output_tokens", None))


def _status_error(exc: Any) -> str:
    status = getattr(exc, "status_code", None)
    body = getattr(exc, "body", None)
    detail = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(body.get("error"), dict) \
        else None
    detail = " ".join(str(detail or exc).split())
    if status == 401:
        return f"the Anthropic API rejected the credentials ({detail}); check ANTHROPIC_API_KEY"
    if status in (429, 529):
        return f"the Anthropic API is busy (HTTP {status}: {detail}); try again later; {NOTHING_STORED}"
    return f"the Anthropic API refused the review request (HTTP {status}: {detail}); {NOTHING_STORED}"


# -- the whole review --------------------------------------------------------------------------------
def review_run(workspace: Any, run_ref: str, *, model: str | None = None,
               env: Mapping[str, str] | None = None) -> Review:
    """Ask the model about run ``run_ref``, validate its reply, and store the findings and the
    ``run.reviewed`` event. Raises ``PromptrailError`` (and stores nothing) on any failure."""
    request = build_request(workspace, run_ref, model)
    answer = ask(request, env)
    try:
        raw = parse_findings(answer.text)
    except BadReply as exc:
        if answer.stop_reason == "max_tokens":
            raise BadReply(f"the model's review was cut off at {MAX_TOKENS} output tokens before its JSON ended; "
                           f"{NOTHING_STORED}") from None
        if answer.stop_reason == "refusal":
            raise BadReply(f"the model refused to review this change; {NOTHING_STORED}") from None
        raise exc
    findings = []
    for item in raw:
        rule_file, rule_line = locate_quote(item["rule"], request.claude_md)
        findings.append(Finding(file=item["file"], line=item["line"], rule=redact(item["rule"]),
                                why=redact(item["why"]), severity=item["severity"], rule_file=rule_file,
                                rule_line=rule_line))
    review = Review(request.run_id, request.commit, request.base, request.model, findings, list(request.claude_md),
                    request.diff_truncated, {"input": answer.input_tokens, "output": answer.output_tokens},
                    _cost(workspace, request.model, answer))
    _store(workspace, review)
    return review


def _cost(workspace: Any, model: str, answer: Answer) -> float | None:
    if answer.input_tokens is None or answer.output_tokens is None:
        return None
    from promptrail import costs
    from promptrail.agents.base import Usage

    try:
        table = workspace.config.parse("prices", costs.price_table)
    except PromptrailError:
        return None  # a malformed [prices] is reported where prices matter; this figure is only for the feed
    return costs.compute_cost(model, Usage(input=answer.input_tokens, output=answer.output_tokens), table)


def _store(workspace: Any, review: Review) -> None:
    try:
        actor: str | None = str(workspace.repo.identity())
    except PromptrailError:
        actor = None  # a review needs no identity; the feed says nobody known asked
    data = {"commit": review.commit, "base": review.base, "model": review.model, "total": len(review.findings),
            **review.counts(), "findings": [f.as_dict() for f in review.findings], "claude_md": review.claude_md,
            "diff_truncated": review.diff_truncated, "tokens": review.tokens, "cost_usd": review.cost_usd}
    workspace.store.add_violations(review.run_id, [f.as_violation() for f in review.findings],
                                   replacing_source=REVIEW_SOURCE, event=(EVENT, actor, data))
