"""Which repository an editor request is about.

An editor may open several workspace folders, each its own git repository (or none). ``Folders``
opens one core ``Workspace`` (with its ``Attribution`` lens cache) per folder the first time a
request needs it — never during ``initialize`` — in a worker thread, and shares it between folders
that lie in the same repository. A folder that is not a repository is reported once with
``window/logMessage``; lens requests there quietly get nothing, commands get the one-line reason.
An open repository reads its ``.promptrail.toml`` again when the file changes on disk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.uris import to_fs_path, uri_scheme

from promptrail.errors import PromptrailError

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

    from promptrail.queries import Attribution
    from promptrail.workspace import Workspace

logger = logging.getLogger(__name__)

#: A folder that failed to open is tried again after this long, so a `git init` there is
#: noticed without restarting the editor (the log message is still sent only once).
RETRY_AFTER_S = 30.0


@dataclass
class Repository:
    """One opened workspace and the lens cache that lives as long as it does."""

    workspace: Workspace
    attribution: Attribution

    @property
    def root(self) -> Path:
        return self.workspace.root


def uri_to_path(uri: str) -> Path | None:
    """A ``file:`` URI as a path; None for other schemes (untitled buffers, git: views...) and for
    what no file system can name (a NUL byte, ``%00``)."""
    if uri_scheme(uri) != "file":
        return None
    path = to_fs_path(uri)
    return Path(path) if path and "\0" not in path else None


def argument_path(value: Any, name: str) -> Path:
    """A command argument that may be a ``file:`` URI or a plain path."""
    if isinstance(value, str) and value:
        path = uri_to_path(value) if "://" in value else Path(value).expanduser()
        if path is not None:
            return path
    raise PromptrailError(f"{name} must be a file: URI or a path, not {value!r}")


def _open_workspace(folder: Path) -> Workspace:
    # Imported here: git and SQLite modules cost a quarter of a second, which `initialize` must not pay.
    from promptrail.workspace import Workspace

    return Workspace(folder)


class Folders:
    """The repositories behind the editor's folders and documents, opened lazily and cached."""

    def __init__(self, ls: LanguageServer) -> None:
        self.ls = ls
        #: The document the user worked in last (opened, changed, asked lenses for): commands
        #: without an explicit folder run in its repository.
        self.active_uri: str | None = None
        self._opening: dict[Path, asyncio.Task[Repository]] = {}
        self._failed_at: dict[Path, float] = {}
        self._by_root: dict[Path, Repository] = {}
        self._reported: set[Path] = set()

    # -- which folder ---------------------------------------------------------------------------
    def folder_paths(self) -> list[Path]:
        paths = [p for p in (uri_to_path(f.uri) for f in self.ls.workspace.folders.values()) if p]
        if not paths and self.ls.workspace.root_path:
            paths.append(Path(self.ls.workspace.root_path))
        return paths

    def folder_of(self, path: Path) -> Path:
        """The innermost workspace folder holding the file ``path``, else the file's own folder."""
        best: Path | None = None
        for folder in self.folder_paths():
            if folder in path.parents and (best is None or len(folder.parts) > len(best.parts)):
                best = folder
        return best if best is not None else path.parent

    def command_folder(self, options: dict[str, Any]) -> Path:
        """The folder given (``workspaceFolder``, or a document ``uri``), else the active (or first
        open) document's folder, else the first workspace folder."""
        if options.get("workspaceFolder"):
            return argument_path(options["workspaceFolder"], "workspaceFolder")
        if options.get("uri"):
            path = argument_path(options["uri"], "uri")
            return path if path.is_dir() else self.folder_of(path)
        for uri in [self.active_uri, *self.ls.workspace.text_documents]:
            path = uri_to_path(uri) if uri else None
            if path is not None:
                return self.folder_of(path)
        folders = self.folder_paths()
        if folders:
            return folders[0]
        raise PromptrailError("no workspace folder is open; open a folder that is a git repository")

    # -- opening --------------------------------------------------------------------------------
    async def open(self, folder: Path) -> Repository:
        """The repository of ``folder``, opened once; raises its ``PromptrailError`` if it has none."""
        task = self._opening.get(folder)
        if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
            if task.cancelled() or time.monotonic() - self._failed_at.get(folder, 0.0) > RETRY_AFTER_S:
                task = None
        if task is None:
            task = asyncio.ensure_future(self._open(folder))
            self._opening[folder] = task
        # Shielded: a request the client cancels must not cancel an opening other requests share.
        return await asyncio.shield(task)

    async def _open(self, folder: Path) -> Repository:
        try:
            workspace = await asyncio.to_thread(_open_workspace, folder)
        except BaseException:
            self._failed_at[folder] = time.monotonic()
            raise
        known = self._by_root.get(workspace.root)
        if known is not None:  # a second folder inside an already opened repository
            await asyncio.to_thread(workspace.close)
            return known
        from promptrail.queries import Attribution

        repository = Repository(workspace, Attribution(workspace))
        self._by_root[workspace.root] = repository
        return repository

    def opened(self, path: Path) -> Repository | None:
        """The repository holding ``path`` if it is open already; None (without opening it) if not."""
        task = self._opening.get(self.folder_of(path))
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    async def for_document(self, uri: str) -> Repository | None:
        """The repository holding a document, or None — reported once per folder — if there is none."""
        path = uri_to_path(uri)
        if path is None:
            return None
        folder = self.folder_of(path)
        try:
            return await self.open(folder)
        except Exception as exc:  # noqa: BLE001 - a lens request must never fail for this
            # Said once for a workspace folder the user opened; a stray file elsewhere gets no word.
            if folder in self.folder_paths():
                self.report_once(folder, exc)
            return None

    async def for_command(self, options: dict[str, Any]) -> Repository:
        return await self.open(self.command_folder(options))

    async def others(self, first: Repository) -> list[Repository]:
        """Every other workspace folder's repository (folders without one are skipped)."""
        found: list[Repository] = []
        for folder in self.folder_paths():
            try:
                repository = await self.open(folder)
            except Exception as exc:  # noqa: BLE001 - this folder simply has no runs
                self.report_once(folder, exc)
                continue
            if repository is not first and repository not in found:
                found.append(repository)
        return found

    def report_once(self, folder: Path, exc: BaseException) -> None:
        if folder in self._reported:
            return
        self._reported.add(folder)
        if not isinstance(exc, PromptrailError):
            logger.error("opening %s failed", folder, exc_info=exc)
        self.ls.window_log_message(types.LogMessageParams(
            type=types.MessageType.Warning, message=f"promptrail: {exc} (no code lenses or runs for {folder})"))

    def config_changed(self, uri: str) -> None:
        """A ``.promptrail.toml`` changed on disk: its repository reads its configuration again,
        and a configuration now broken is reported at once rather than at the next run."""
        path = uri_to_path(uri)
        repository = self.opened(path) if path is not None else None
        if repository is None:
            return  # not open yet: it reads the file when it opens
        try:
            # On the event loop (two small files): a command sent after the change must see it.
            repository.workspace.reload_config()
        except PromptrailError as exc:
            self.ls.window_log_message(types.LogMessageParams(type=types.MessageType.Warning,
                                                             message=f"promptrail: {exc}"))

    def folders_changed(self, added: list[Path], removed: list[Path]) -> None:
        for folder in [*added, *removed]:
            self._failed_at.pop(folder, None)
            task = self._opening.get(folder)
            if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
                del self._opening[folder]
