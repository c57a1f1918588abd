"""CLAUDE.md rule diagnostics in the editor: when each open document is checked, and how the core's
findings become ``textDocument/publishDiagnostics``.

What is found is the core's business (``standards.diagnose_document`` for any document,
``standards.diagnose_claude_md`` for a CLAUDE.md's own malformed rules); this module owns the
scheduling and the mapping to LSP:

- When: at once on didOpen and didSave; on didChange after a pause of ``DEBOUNCE_S``, but no later
  than ``MAX_DELAY_S`` after the first unchecked change. Always on the document's current, possibly
  unsaved, text (didSave asks for the saved text: when it differs from the text the server holds,
  the saved text wins, see ``server``); open CLAUDE.md documents count with their unsaved text too.
- When the rules change: any event on an open CLAUDE.md (open, change, save, close), and a
  CLAUDE.md created, changed or deleted on disk (checkout, pull, another program: the server asks
  clients that can to watch ``**/CLAUDE.md``, see ``server``) re-checks every open document of its
  repository. The core re-reads the CLAUDE.md files for every check and caches parsed rules by
  content, so there is no cache to invalidate. A client that watches no files still gets the rules
  on disk at a document's next check: saving a document (or CLAUDE.md itself) brings it up to date.
- Never blocking: git and the regexes run in a worker thread, one check per document and at most
  ``MAX_PARALLEL_CHECKS`` in all at a time; a newer request supersedes a waiting one. (Python's
  ``re`` keeps the GIL for the length of one scan: a rule whose regex must read a whole 1 MB text
  slows other requests by that scan's time, tens of ms, while it runs.)
- Keeping up with a user who never pauses: a check of a large document can take longer than the
  time between two keystrokes, so its result is usually outdated when it arrives. It is not thrown
  away: its diagnostics on lines the document has not changed since (before the first changed line,
  or after the last one, moved by the lines added or removed) are published for the current
  version; those on changed lines wait for a check of the new text. Ranges are never published
  for text they were not found in. A finding about the whole file (``require``, ``max_lines``) is
  carried over like the others, so it may lag one check behind. A result computed with a CLAUDE.md
  text that has changed since is dropped: the re-check it set off publishes.
- Where: ranges are the core's code-point columns converted to the negotiated position encoding
  (UTF-16 unless the client chose otherwise), on lines split as LSP splits them (``\\n``,
  ``\\r\\n``, ``\\r``). ``code`` is the rule id and ``codeDescription`` links to the rule's
  ``[[rule]]`` line in the CLAUDE.md that defines it (``file:...#L<line>``).
- Documents that are not ``file:`` URIs or lie outside any repository get nothing; closing a
  document clears its diagnostics.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import unquote

import attrs
from lsprotocol import types
from pygls.uris import from_fs_path

from promptrail.lsp.folders import uri_to_path

if TYPE_CHECKING:
    from pygls.workspace.position_codec import PositionCodec

    from promptrail.lsp.folders import Repository
    from promptrail.lsp.server import PromptrailServer
    from promptrail.workspace import Workspace

logger = logging.getLogger(__name__)

SOURCE = "CLAUDE.md"
CLAUDE_MD = "CLAUDE.md"
#: Quiet time after a change before the document is checked.
DEBOUNCE_S = 0.3
#: A document changed without pause is still checked this long after its first unchecked change.
MAX_DELAY_S = 1.0
#: Checks running at once (each in a worker thread). Editing a CLAUDE.md re-checks every open
#: document; the rest of the thread pool stays free for lens and command requests meanwhile.
MAX_PARALLEL_CHECKS = 2
#: Per document. A generated or vendored file can break a rule on every line; tens of thousands of
#: diagnostics would cost the editor more than they tell anyone (``promptrail check`` lists all).
MAX_DIAGNOSTICS = 1000

SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning,
            "info": types.DiagnosticSeverity.Information, "hint": types.DiagnosticSeverity.Hint}
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def is_claude_md(uri: str) -> bool:
    path = uri_to_path(uri)
    return path is not None and path.name == CLAUDE_MD


@dataclass(eq=False)
class _State:
    """The scheduling state of one open document."""

    #: Bumped by every request to check; only the newest waiting request starts a check.
    generation: int = 0
    #: The request waiting (debounce) or running for this document.
    task: asyncio.Task[None] | None = None
    #: The worker thread's check, kept apart from ``task``: cancelling a superseded request cannot
    #: stop a thread, and the next check waits for it so one document never has two at once.
    running: asyncio.Future[Any] | None = None
    #: Loop time of the first change not yet covered by a check (for ``MAX_DELAY_S``).
    first_unchecked: float | None = None
    #: Bumped when the rules that apply to the document may have changed (a CLAUDE.md event): a
    #: result computed before is dropped, not carried over.
    rules: int = 0


@dataclass(frozen=True)
class _Snapshot:
    """What one check is about: the document's text at a version, under the rules of one moment."""

    uri: str
    version: int
    text: str
    rules: int


class Diagnostics:
    """Schedules the checks of the open documents and publishes their diagnostics."""

    def __init__(self, ls: PromptrailServer) -> None:
        self.ls = ls
        self._states: dict[str, _State] = {}
        self._slots = asyncio.Semaphore(MAX_PARALLEL_CHECKS)

    # -- document events (called by the server's didOpen/didChange/didSave/didClose) ----------------
    def opened(self, uri: str) -> None:
        self._touched(uri, 0.0)

    def changed(self, uri: str) -> None:
        self._touched(uri, DEBOUNCE_S)

    def saved(self, uri: str) -> None:
        self._touched(uri, 0.0)

    def closed(self, uri: str) -> None:
        state = self._states.pop(unquote(uri), None)
        if state is not None and state.task is not None:
            state.task.cancel()
        if uri_to_path(uri) is not None:
            self.ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        if is_claude_md(uri):
            # Its unsaved text no longer overrides the file on disk: the other documents' rules changed.
            self.rules_changed([uri])

    def _touched(self, uri: str, delay: float) -> None:
        if uri_to_path(uri) is None:
            return
        if is_claude_md(uri):
            self.rules_changed([uri], delay)
        else:
            self.schedule(uri, delay)

    def rules_changed(self, claude_md_uris: Sequence[str], delay: float = 0.0) -> None:
        """CLAUDE.md files changed, in the editor or on disk: re-check the open documents of their
        repositories (all of a document's rules come from its own repository)."""
        paths = [path for path in map(uri_to_path, claude_md_uris) if path is not None]
        if not paths:
            return
        folders = self.ls.folders
        # Decided now, without waiting: a repository not opened yet is matched with everything.
        changed = [folders.opened(path) for path in paths]
        for document in list(self.ls.workspace.text_documents.values()):
            path = uri_to_path(document.uri)
            if path is None:
                continue
            mine = folders.opened(path)
            if mine is None or any(repository is None or repository is mine for repository in changed):
                self.schedule(document.uri, delay, rules_changed=True)

    # -- scheduling ----------------------------------------------------------------------------------
    def schedule(self, uri: str, delay: float, *, rules_changed: bool = False) -> None:
        """Check ``uri`` after ``delay`` seconds, superseding any check requested before."""
        key = unquote(uri)  # pygls keys its documents this way
        if key not in self.ls.workspace.text_documents or uri_to_path(uri) is None:
            return
        state = self._states.setdefault(key, _State())
        state.generation += 1
        if rules_changed:
            state.rules += 1
        if state.task is not None and not state.task.done():
            state.task.cancel()
        loop = asyncio.get_running_loop()
        now = loop.time()
        if state.first_unchecked is None:
            state.first_unchecked = now
        delay = max(0.0, min(delay, state.first_unchecked + MAX_DELAY_S - now))
        state.task = loop.create_task(self._check(key, state, state.generation, delay))

    def _current(self, key: str, state: _State, generation: int) -> bool:
        return self._states.get(key) is state and state.generation == generation

    async def _check(self, key: str, state: _State, generation: int, delay: float) -> None:
        try:
            if delay:
                await asyncio.sleep(delay)
            if state.running is not None and not state.running.done():
                await asyncio.wait([state.running])
            document = self.ls.workspace.text_documents.get(key)
            if document is None or not self._current(key, state, generation):
                return
            repository = await self.ls.folders.for_document(document.uri)
            if repository is None or not self._current(key, state, generation):
                return
            await self._slots.acquire()
        except asyncio.CancelledError:
            return
        started = False
        try:
            started = self._start(key, state, generation, repository)
        finally:
            if not started:
                self._slots.release()

    def _start(self, key: str, state: _State, generation: int, repository: Repository) -> bool:
        """Start the worker thread on the document's text as it is now; False if no longer wanted.
        Once started, the thread holds the slot acquired for it until it ends."""
        document = self.ls.workspace.text_documents.get(key)
        if document is None or not self._current(key, state, generation):
            return False
        snapshot = _Snapshot(document.uri, document.version, document.source, state.rules)
        unsaved = [(path, doc.source) for doc in self.ls.workspace.text_documents.values()
                   if (path := uri_to_path(doc.uri)) is not None and path.name == CLAUDE_MD]
        path = uri_to_path(snapshot.uri)
        assert path is not None
        state.first_unchecked = None
        state.running = asyncio.get_running_loop().run_in_executor(
            None, diagnose, repository.workspace, path, snapshot.text, unsaved, self.ls.workspace.position_codec)
        # Published when the thread ends, even if this request has been superseded by then: an
        # outdated result still holds on the lines not changed since (``carry_over``).
        state.running.add_done_callback(lambda future: self._finished(key, state, snapshot, future))
        return True

    def _finished(self, key: str, state: _State, snapshot: _Snapshot, future: asyncio.Future[Any]) -> None:
        self._slots.release()
        if future.cancelled():
            return
        if future.exception() is not None:
            # A broken check must not take the editor's diagnostics down.
            logger.error("CLAUDE.md diagnostics of %s failed", key, exc_info=future.exception())
            return
        diagnostics = future.result()
        current = self.ls.workspace.text_documents.get(key)
        if (diagnostics is None or current is None or self._states.get(key) is not state
                or state.rules != snapshot.rules):
            return  # outside a repository, closed, or found under rules changed since: their re-check publishes
        # By text, not version: a save whose text differs replaces the document at the same version.
        if current.source != snapshot.text:
            diagnostics = carry_over(diagnostics, snapshot.text, current.source)
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=snapshot.uri, version=current.version, diagnostics=diagnostics))


# -- outdated results: what still holds ---------------------------------------------------------------
_CHUNK = 4096


def carry_over(diagnostics: list[types.Diagnostic], old: str, new: str) -> list[types.Diagnostic]:
    """The ``diagnostics`` found in ``old`` whose ranges are still exact in ``new``: those on the
    lines before the first change and after the last one (moved by the lines added or removed).
    Each diagnostic spans one line. A few ms for a 1 MB text: C-speed comparisons and counts only."""
    if old == new:
        return diagnostics
    prefix, suffix = _common_prefix(old, new), _common_suffix(old, new)
    # Each holds on its own (the two may overlap where the texts repeat themselves): lines ending
    # before the first difference read the same, at the same number, in both texts; the lines after
    # a line break inside the common end are the same last lines of both texts.
    head = _line_breaks(old, 0, prefix)
    old_lines = _line_breaks(old, 0, len(old)) + 1
    tail_start = old_lines - _line_breaks(old, len(old) - suffix, len(old))
    shift = _line_breaks(new, 0, len(new)) + 1 - old_lines
    kept = []
    for diagnostic in diagnostics:
        line = diagnostic.range.start.line
        if line < head:
            kept.append(diagnostic)
        elif line >= tail_start:
            start, end = diagnostic.range.start, diagnostic.range.end
            kept.append(attrs.evolve(diagnostic, range=types.Range(
                start=types.Position(line=line + shift, character=start.character),
                end=types.Position(line=end.line + shift, character=end.character))))
    return kept


def _line_breaks(text: str, start: int, end: int) -> int:
    """Line breaks in ``text[start:end]`` as LSP counts them (``\\r\\n`` is one)."""
    return text.count("\n", start, end) + text.count("\r", start, end) - text.count("\r\n", start, end)


def _common_prefix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    length = 0
    while length < limit and a[length:length + _CHUNK] == b[length:length + _CHUNK]:
        length += _CHUNK
    length = min(length, limit)
    while length < limit and a[length] == b[length]:
        length += 1
    return length


def _common_suffix(a: str, b: str) -> int:
    limit = min(len(a), len(b))
    length = 0
    while length < limit:
        step = min(_CHUNK, limit - length)
        if a[len(a) - length - step:len(a) - length] != b[len(b) - length - step:len(b) - length]:
            break
        length += step
    while length < limit and a[len(a) - length - 1] == b[len(b) - length - 1]:
        length += 1
    return length


# -- the worker thread: core findings → LSP diagnostics ---------------------------------------------
def diagnose(workspace: Workspace, path: Path, text: str, unsaved_claude_md: Sequence[tuple[Path, str]],
             codec: PositionCodec) -> list[types.Diagnostic] | None:
    """The diagnostics of the document at ``path`` with ``text``, or None when it is not in
    ``workspace``'s repository. ``unsaved_claude_md``: (path, text) of the open CLAUDE.md documents."""
    from promptrail.errors import PromptrailError
    from promptrail.standards import diagnose_claude_md, diagnose_document

    repo = workspace.repo
    try:
        relpath = repo.relpath(path)
    except PromptrailError:
        return None
    if relpath == ".git" or relpath.startswith(".git/"):
        return None  # git's own files (COMMIT_EDITMSG...) are nobody's code
    overrides: dict[str, str] = {}
    for claude_md, claude_text in unsaved_claude_md:
        try:
            overrides[repo.relpath(claude_md)] = claude_text
        except PromptrailError:
            continue  # another repository's
    violations = diagnose_document(workspace, relpath, text, claude_md=overrides)
    problems = diagnose_claude_md(workspace, relpath, text, claude_md=overrides) if path.name == CLAUDE_MD else []
    if not violations and not problems:
        return []
    lines = _LINE_BREAK.split(text)

    def where(line: int, start: int, end: int) -> types.Range:
        number = min(max(line - 1, 0), len(lines) - 1)
        content = lines[number]
        first = codec.client_num_units(content[:start])
        last = first + codec.client_num_units(content[start:end])
        return types.Range(start=types.Position(line=number, character=first),
                           end=types.Position(line=number, character=last))

    found = [types.Diagnostic(range=where(p.line, p.start_col, p.end_col), message=p.message,
                              severity=SEVERITY.get(p.severity, types.DiagnosticSeverity.Error), code=p.code,
                              source=SOURCE) for p in problems]
    links: dict[tuple[str, int], types.CodeDescription] = {}
    for violation in violations[:MAX_DIAGNOSTICS]:
        link_key = (violation.rule_file, violation.rule_line)
        link = links.get(link_key)
        if link is None:
            link = links[link_key] = types.CodeDescription(
                href=f"{from_fs_path(str(repo.root / violation.rule_file))}#L{violation.rule_line}")
        found.append(types.Diagnostic(
            range=where(violation.line, violation.start_col, violation.end_col), message=violation.message,
            severity=SEVERITY.get(violation.severity, types.DiagnosticSeverity.Warning), code=violation.rule_id,
            code_description=link, source=SOURCE))
    if len(violations) > MAX_DIAGNOSTICS:
        first_hidden = violations[MAX_DIAGNOSTICS]
        found.append(types.Diagnostic(
            range=where(first_hidden.line, first_hidden.start_col, first_hidden.end_col),
            message=(f"{len(violations) - MAX_DIAGNOSTICS} more CLAUDE.md violations in this file are not shown; "
                     f"`promptrail check {relpath}` lists them all"),
            severity=types.DiagnosticSeverity.Information, source=SOURCE))
    return found
