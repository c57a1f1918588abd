"""CLAUDE.md rule diagnostics in the editor: when each open document is checked, and how the core's
findings become ``textDocument/publishDiagnostics``.

What is found is the core's business (``standards.diagnose_document`` for any document,
``standards.diagnose_claude_md`` for a CLAUDE.md's own malformed rules); this module owns the
scheduling and the mapping to LSP:

- When: at once on didOpen and didSave; on didChange after a pause of ``DEBOUNCE_S`` (but no later
  than ``MAX_DELAY_S`` after the first unchecked change, so diagnostics keep up with a user who
  never pauses). Always on the document's current, possibly unsaved, text; open CLAUDE.md
  documents count with their unsaved text too, and any event on a CLAUDE.md (open, change, save,
  close) re-checks every open document.
- Never blocking: git and the regexes run in a worker thread, one check per document and at most
  ``MAX_PARALLEL_CHECKS`` in all at a time. A newer request supersedes a waiting one, and a result
  computed for a document version (or a CLAUDE.md text) that has changed since is dropped, never
  published. (Python's ``re`` keeps the GIL for the length of one scan: a rule whose regex must
  read a whole 1 MB text slows other requests by that scan's time, tens of ms, while it runs.)
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

from lsprotocol import types
from pygls.uris import from_fs_path

from promptrail.lsp.folders import uri_to_path

if TYPE_CHECKING:
    from pygls.workspace.position_codec import PositionCodec

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

    #: Bumped by every request to check; a result is published only by the newest request.
    generation: int = 0
    #: The request waiting (debounce) or running for this document.
    task: asyncio.Task[None] | None = None
    #: The worker thread's check, kept apart from ``task``: cancelling a superseded request cannot
    #: stop a thread, and the next check waits for it so one document never has two at once.
    running: asyncio.Future[Any] | None = None
    #: Loop time of the first change not yet covered by a check (for ``MAX_DELAY_S``).
    first_unchecked: float | None = None


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
            self._recheck_all(0.0)

    def _touched(self, uri: str, delay: float) -> None:
        if uri_to_path(uri) is None:
            return
        if is_claude_md(uri):
            self._recheck_all(delay)
        else:
            self.schedule(uri, delay)

    def _recheck_all(self, delay: float) -> None:
        for document in list(self.ls.workspace.text_documents.values()):
            self.schedule(document.uri, delay)

    # -- scheduling ----------------------------------------------------------------------------------
    def schedule(self, uri: str, delay: float) -> None:
        """Check ``uri`` after ``delay`` seconds, superseding any check requested before."""
        key = unquote(uri)  # pygls keys its documents this way
        if key not in self.ls.workspace.text_documents or uri_to_path(uri) is None:
            return
        state = self._states.setdefault(key, _State())
        state.generation += 1
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
            document = self.ls.workspace.text_documents.get(key)
            if document is None or not self._current(key, state, generation):
                self._slots.release()
                return
            # The snapshot this check is about: the text, its version, and the unsaved CLAUDE.md texts.
            uri, version, text = document.uri, document.version, document.source
            unsaved = [(path, doc.source) for doc in self.ls.workspace.text_documents.values()
                       if (path := uri_to_path(doc.uri)) is not None and path.name == CLAUDE_MD]
            path = uri_to_path(uri)
            assert path is not None
            state.first_unchecked = None
            state.running = asyncio.get_running_loop().run_in_executor(
                None, diagnose, repository.workspace, path, text, unsaved, self.ls.workspace.position_codec)
            # The slot is the thread's, not this request's: released when the thread ends, even if
            # this request is superseded before that.
            state.running.add_done_callback(lambda _: self._slots.release())
            # Shielded: a superseded request stops waiting, but the thread's end is still awaited by the next.
            diagnostics = await asyncio.shield(state.running)
        except asyncio.CancelledError:
            return
        except Exception:  # noqa: BLE001 - a broken check must not take the editor's diagnostics down
            logger.exception("CLAUDE.md diagnostics of %s failed", key)
            return
        current = self.ls.workspace.text_documents.get(key)
        if (diagnostics is None or not self._current(key, state, generation) or current is None
                or current.version != version):
            return  # outside a repository, or outdated: a newer check publishes
        self.ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=diagnostics))


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
