"""Code lenses over the lines AI runs wrote: one lens at the top of each contiguous group of lines
from one run, titled lazily (``codeLens/resolve``) with ``queries.lens_title`` and the gate as of
now; and at the top of the file, Approve · Reject · Simulate for each of its runs the viewer may
sign off.

The attribution itself (blame → runs, grouping, caching, skipping files no run touched, the size
limit) is the core's ``queries.Attribution``; this module only maps it to LSP. The document's
current text is what gets blamed, so an unsaved buffer's lenses sit on the right lines. Git and
SQLite run in a worker thread; a document outside any repository simply has no lenses.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types

from promptrail.errors import PromptrailError
from promptrail.lsp.commands import GATE_APPROVE, GATE_REJECT, GATE_SIMULATE, SHOW_RUN
from promptrail.lsp.folders import uri_to_path

if TYPE_CHECKING:
    from pygls.workspace.position_codec import PositionCodec

    from promptrail.lsp.folders import Repository
    from promptrail.lsp.server import PromptrailServer
    from promptrail.workspace import Workspace


def register(ls: PromptrailServer) -> None:
    ls.feature(types.TEXT_DOCUMENT_CODE_LENS, types.CodeLensOptions(resolve_provider=True))(code_lens)
    ls.feature(types.CODE_LENS_RESOLVE)(resolve_code_lens)


async def code_lens(ls: PromptrailServer, params: types.CodeLensParams) -> list[types.CodeLens]:
    uri = params.text_document.uri
    path = uri_to_path(uri)
    if path is None:
        return []
    repository = await ls.folders.for_document(uri)
    if repository is None:
        return []
    document = ls.workspace.text_documents.get(unquote(uri))
    # An open document's text may be unsaved: blame exactly that (`git blame --contents`).
    text = document.source if document is not None else None
    return await asyncio.to_thread(_lenses, repository, path, uri, text, ls.workspace.position_codec)


def _lenses(repository: Repository, path: Path, uri: str, text: str | None,
            codec: PositionCodec) -> list[types.CodeLens]:
    try:
        relpath = repository.workspace.repo.relpath(path)
    except PromptrailError:  # a file outside the repository (a symlink out, say)
        return []
    attribution = repository.attribution.for_file(relpath, text)
    if attribution.summary_only:
        summary = _summary_lens(repository.workspace, relpath, uri)
        return [summary] if summary else []
    if not attribution.groups:
        return []
    lines = (text if text is not None else _read(path)).split("\n")
    reviewable = _reviewable(repository.workspace, attribution)
    lenses = []
    for group in attribution.groups:
        last = lines[group.end].rstrip("\r") if group.end < len(lines) else ""
        where = types.Range(start=types.Position(line=group.start, character=0),
                            end=types.Position(line=group.end, character=codec.client_num_units(last)))
        lenses.append(types.CodeLens(range=where, data={"runId": group.run_id, "uri": uri}))
    # At the top of the file, once per run, after a run lens that may share line 0.
    top = types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0))
    for run_id in dict.fromkeys(group.run_id for group in attribution.groups):
        if run_id in reviewable:
            arguments = [{"runId": run_id, "uri": uri}]
            lenses += [types.CodeLens(range=top, command=types.Command(title=title, command=command,
                                                                       arguments=arguments))
                       for title, command in REVIEW_ACTIONS]
    return lenses


REVIEW_ACTIONS = (("✓ Approve", GATE_APPROVE), ("✗ Reject", GATE_REJECT), ("▶ Simulate", GATE_SIMULATE))


_REVIEW_CACHE_S = 10.0
_review_cache: dict[tuple, tuple[float, frozenset[str]]] = {}


def _reviewable(workspace: Workspace, attribution) -> set[str]:
    """Runs in this file the viewer may sign off. Deciding costs a few git calls (identity,
    policy), so the answer is kept for a few seconds per (runs and their gates, HEAD)."""
    from promptrail.gates import reviewable_by_me

    # Fresh rows: the attribution's are cached with the blame and may predate a sign-off.
    rows = list(workspace.store.runs_by_ids((attribution.runs or {}).keys()).values())
    key = (str(workspace.root), workspace.repo.head_sha_fast(), workspace.repo.config_stamp(),
           frozenset((row["id"], row.get("gate_status")) for row in rows))
    now = time.monotonic()
    cached = _review_cache.get(key)
    if cached is None or now - cached[0] > _REVIEW_CACHE_S:
        if len(_review_cache) > 256:
            _review_cache.clear()
        cached = (now, frozenset(reviewable_by_me(workspace, rows)))
        _review_cache[key] = cached
    return set(cached[1])


async def resolve_code_lens(ls: PromptrailServer, lens: types.CodeLens) -> types.CodeLens:
    data = lens.data if isinstance(lens.data, dict) else {}
    # The data comes back from the client: only the strings this server put there are trusted.
    if lens.command is not None or not all(isinstance(data.get(key), str) and data[key] for key in ("runId", "uri")):
        return lens
    repository = await ls.folders.for_document(data["uri"])
    title = await asyncio.to_thread(_title, repository.workspace, data["runId"]) if repository else None
    if title is None:
        title = f"✦ run {data['runId']} (not in this repository's audit store)"
    lens.command = types.Command(title=title, command=SHOW_RUN,
                                 arguments=[{"runId": data["runId"], "uri": data["uri"]}])
    return lens


def _title(workspace: Workspace, run_id: str) -> str | None:
    from promptrail.queries import lens_title, with_live_gate

    row = workspace.store.get_run(run_id)
    return lens_title(with_live_gate(workspace, row)) if row else None


def _summary_lens(workspace: Workspace, relpath: str, uri: str) -> types.CodeLens | None:
    from promptrail.queries import file_summary

    summary = file_summary(workspace, relpath)
    if summary is None:
        return None
    start = types.Position(line=0, character=0)
    return types.CodeLens(range=types.Range(start=start, end=start),
                          command=types.Command(title=summary["title"], command=SHOW_RUN,
                                                arguments=[{"runId": summary["latest_run_id"], "uri": uri}]))


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return ""
