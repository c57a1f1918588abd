"""CLAUDE.md rule diagnostics from the real ``promptrail serve`` over stdio (see tests/e2e/conftest.py):
exact ranges in the negotiated position encoding (emoji, CJK, CRLF), the unsaved text of the
document and of CLAUDE.md, the saved text, CLAUDE.md changed on disk (watched or not), malformed
rules placed on CLAUDE.md itself, diagnostics that keep up with non-stop typing in a 1 MB document,
and a code-lens request answered while a 1 MB document is being checked.

Expected columns are computed here from the strings themselves (UTF-16 code units = the length of
the UTF-16-LE encoding / 2), never with the server's own helpers.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest
from lsprotocol import types
from pygls.uris import from_fs_path
from pytest_lsp import LanguageClient

from tests.e2e.clients import WATCHING_FILES, capabilities, registrations, session
from tests.e2e.conftest import LspFolders, Recorder, plain, wait_until

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_md"

RULES = r'''# How we work

Write small functions. Log with `logging`.

```promptrail
[[rule]]
id = "no-print"
paths = ["**/*.py"]
forbid = '\bprint\('
message = "Use logging, not print."
severity = "warning"
```
'''
RULES_WITH_KANJI = RULES + r'''
```promptrail
[[rule]]
id = "no-kanji"
paths = ["**/*.py"]
forbid = '漢字'
message = "ASCII only."
severity = "error"
```
'''
LINE = 'x = "😀漢字"; print(1)'
NEEDLE = "print("
#: In LINE, as the two rules above see it (UTF-16 columns: the emoji is two code units).
KANJI_AND_PRINT = [("no-kanji", (0, 7, 0, 9), types.DiagnosticSeverity.Error),
                   ("no-print", (0, 12, 0, 18), types.DiagnosticSeverity.Warning)]


def recorder(client: LanguageClient) -> Recorder:
    return client.recorder  # type: ignore[attr-defined]


def utf16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def rule_href(claude_md: Path, text: str, header: str = "[[rule]]") -> str:
    """The link a rule's diagnostics carry: the CLAUDE.md file, at the line of the rule's header."""
    return f"{from_fs_path(str(claude_md))}#L{text.splitlines().index(header) + 1}"


def file_uri(path: Path) -> str:
    uri = from_fs_path(str(path))
    assert uri is not None
    return uri


def did_open(client: LanguageClient, path: Path, text: str, version: int = 1, language: str = "python") -> str:
    uri = file_uri(path)
    client.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=uri, language_id=language, version=version, text=text)))
    return uri


def did_change(client: LanguageClient, uri: str, version: int, text: str) -> None:
    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))


async def published(client: LanguageClient, uri: str, version: int | None = None,
                    after: int = 0, timeout: float = 10.0) -> types.PublishDiagnosticsParams:
    """The first diagnostics published for ``uri`` (at ``version``, when given) after the
    ``after``-th publication of the session."""
    events = recorder(client)

    def found() -> types.PublishDiagnosticsParams | None:
        return next((p for p in events.published[after:]
                     if p.uri == uri and (version is None or p.version == version)), None)

    await wait_until(found, timeout, f"diagnostics for {uri} (version {version})")
    result = found()
    assert result is not None
    return result


def did_save(client: LanguageClient, uri: str, text: str | None = None) -> None:
    client.text_document_did_save(types.DidSaveTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=uri), text=text))


async def settles_on(client: LanguageClient, uri: str, version: int, spans: list[tuple[int, int, int, int]],
                    timeout: float = 10.0) -> None:
    """Wait until the latest diagnostics of ``uri`` are for ``version``, with exactly ``spans``
    (a check that was outdated when it ended may publish part of them first)."""
    def latest() -> bool:
        mine = recorder(client).diagnostics_of(uri)
        return bool(mine) and mine[-1].version == version and list(map(span, mine[-1].diagnostics)) == spans

    await wait_until(latest, timeout, f"diagnostics {spans} for {uri} (version {version})")


def span(diagnostic: types.Diagnostic) -> tuple[int, int, int, int]:
    r = diagnostic.range
    return r.start.line, r.start.character, r.end.line, r.end.character


def found(diagnostics: list[types.Diagnostic]) -> list[tuple[object, tuple[int, int, int, int], object]]:
    return [(d.code, span(d), d.severity) for d in diagnostics]


# -- ranges ---------------------------------------------------------------------------------------------
async def test_forbid_range_is_exact_in_utf16_columns(lsp: LanguageClient, lsp_folders: LspFolders):
    claude_md = lsp_folders.repo / "CLAUDE.md"
    claude_md.write_text(RULES)
    uri = did_open(lsp, lsp_folders.repo / "app.py", f"import os\n{LINE}\n")

    [diagnostic] = (await published(lsp, uri, version=1)).diagnostics
    start = utf16(LINE[:LINE.index(NEEDLE)])
    assert start == 12 and LINE.index(NEEDLE) == 11, "the emoji is one code point but two UTF-16 units"
    assert span(diagnostic) == (1, start, 1, start + utf16(NEEDLE))
    assert diagnostic.source == "CLAUDE.md"
    assert diagnostic.code == "no-print"
    assert diagnostic.severity == types.DiagnosticSeverity.Warning
    assert diagnostic.message == "Use logging, not print."
    assert diagnostic.code_description is not None
    assert diagnostic.code_description.href == rule_href(claude_md, RULES)
    assert diagnostic.code_description.href.endswith("/CLAUDE.md#L6")


async def test_crlf_document(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES.replace("\n", "\r\n"))
    text = "\r\n".join(["# 日本語のコメント 🎌", "", LINE, "print('second')", ""])
    uri = did_open(lsp, lsp_folders.repo / "crlf.py", text)

    diagnostics = (await published(lsp, uri, version=1)).diagnostics
    start = utf16(LINE[:LINE.index(NEEDLE)])
    assert [span(d) for d in diagnostics] == [(2, start, 2, start + 6), (3, 0, 3, 6)]
    assert {d.code for d in diagnostics} == {"no-print"}
    # The rule's line counts CRLF line ends as one break each, as the editor does.
    assert diagnostics[0].code_description.href == rule_href(lsp_folders.repo / "CLAUDE.md", RULES)


async def test_ranges_follow_the_negotiated_encoding(lsp_folders: LspFolders):
    # A client that prefers UTF-32 counts code points: the same match starts one column earlier.
    utf32 = capabilities(general={"position_encodings": [types.PositionEncodingKind.Utf32]})
    async with session(lsp_folders, utf32) as (client, result):
        assert result.capabilities.position_encoding == types.PositionEncodingKind.Utf32
        (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
        uri = did_open(client, lsp_folders.repo / "app.py", f"{LINE}\n")
        [diagnostic] = (await published(client, uri, version=1)).diagnostics
        assert span(diagnostic) == (0, LINE.index(NEEDLE), 0, LINE.index(NEEDLE) + 6)


# -- the unsaved text ---------------------------------------------------------------------------------
async def test_diagnostics_follow_unsaved_changes(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    path = lsp_folders.repo / "app.py"
    path.write_text("saved = True\n")  # the disk never matters: the buffer does
    uri = did_open(lsp, path, f"{LINE}\n")
    first = (await published(lsp, uri, version=1)).diagnostics
    assert [span(d) for d in first] == [(0, 12, 0, 18)]

    # An incremental edit: 'ok = "✓"; ' typed at the start of the line moves the match right.
    typed = 'ok = "✓"; '
    lsp.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangePartial(
            range=types.Range(start=types.Position(line=0, character=0), end=types.Position(line=0, character=0)),
            text=typed)]))
    moved = (await published(lsp, uri, version=2)).diagnostics
    line = typed + LINE
    start = utf16(line[:line.index(NEEDLE)])
    assert [span(d) for d in moved] == [(0, start, 0, start + 6)]

    did_change(lsp, uri, 3, 'x = "😀漢字"; logging.info(1)\n')
    assert not (await published(lsp, uri, version=3)).diagnostics
    assert path.read_text() == "saved = True\n"

    # didSave (without the text: the buffer is checked) at once, and a change right after it.
    did_save(lsp, uri)
    did_change(lsp, uri, 4, "print()\n")
    await settles_on(lsp, uri, 4, [(0, 0, 0, 6)])
    before = len(recorder(lsp).published)
    lsp.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    closed = await published(lsp, uri, after=before)
    assert not closed.diagnostics


async def test_rapid_edits_never_publish_a_range_for_other_text(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    texts = {1: "pass\n"}
    uri = did_open(lsp, lsp_folders.repo / "typing.py", texts[1])
    for version in range(2, 41):
        # Each version has its print( on a different line, so a result names the text it was made for.
        texts[version] = "pass\n" * (version % 7) + "print(version)\n"
        did_change(lsp, uri, version, texts[version])
        await asyncio.sleep(0.01 if version % 10 else 0.4)  # bursts, with pauses longer than the debounce

    expected = {version: [(n, 0, n, 6) for n, line in enumerate(text.splitlines()) if "print(" in line]
                for version, text in texts.items()}
    await settles_on(lsp, uri, 40, expected[40])
    mine = recorder(lsp).diagnostics_of(uri)
    for params in mine:
        # A result that was outdated when it arrived is published for the current version, with
        # only what still holds there: never a range that belongs to another version's text.
        assert set(map(span, params.diagnostics)) <= set(expected[params.version]), f"version {params.version}"
    versions = [params.version for params in mine]
    assert versions == sorted(versions) and len(versions) < 20, versions  # debounced: far fewer than 40


# -- the saved text -----------------------------------------------------------------------------------
async def test_a_save_checks_the_saved_text(lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    path = lsp_folders.repo / "app.py"
    path.write_text("print(1)\n")
    async with session(lsp_folders, capabilities()) as (client, result):
        save = result.capabilities.text_document_sync.save
        assert save is not None and save.include_text is True, "didSave must carry the saved text"
        uri = did_open(client, path, "print(1)\n")
        assert [span(d) for d in (await published(client, uri, version=1)).diagnostics] == [(0, 0, 0, 6)]

        # The file changed on disk and the editor saved it without sending the change first: the
        # text the save carries is checked at once, not the text the server was told before.
        saved = f"import logging\n\n{LINE}\n"
        path.write_text(saved)
        before = len(recorder(client).published)
        did_save(client, uri, saved)
        after_save = await published(client, uri, after=before)
        start = utf16(LINE[:LINE.index(NEEDLE)])
        assert after_save.version == 1
        assert [span(d) for d in after_save.diagnostics] == [(2, start, 2, start + 6)]

        # The saved text is the document's from then on: the next incremental edit applies to it.
        client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[types.TextDocumentContentChangePartial(
                range=types.Range(start=types.Position(line=2, character=0), end=types.Position(line=2, character=0)),
                text="# ")]))
        assert [span(d) for d in (await published(client, uri, version=2)).diagnostics] == [
            (2, start + 2, 2, start + 8)]


# -- CLAUDE.md itself ---------------------------------------------------------------------------------
async def test_editing_claude_md_rechecks_the_open_documents(lsp: LanguageClient, lsp_folders: LspFolders):
    claude_md = lsp_folders.repo / "CLAUDE.md"
    claude_md.write_text(RULES)
    uri = did_open(lsp, lsp_folders.repo / "app.py", f"{LINE}\n")
    assert len((await published(lsp, uri, version=1)).diagnostics) == 1

    rules_uri = did_open(lsp, claude_md, RULES, language="markdown")
    assert not (await published(lsp, rules_uri, version=1)).diagnostics
    # The rule block removed in the editor, not on disk: app.py's diagnostic goes at once.
    before = len(recorder(lsp).published)
    did_change(lsp, rules_uri, 2, "# How we work\n\nAnything goes.\n")
    assert not (await published(lsp, uri, after=before)).diagnostics
    assert claude_md.read_text() == RULES

    # A new rule typed into CLAUDE.md (still unsaved) applies to app.py too.
    before = len(recorder(lsp).published)
    did_change(lsp, rules_uri, 3, RULES.replace(r"'\bprint\('", "'漢字'").replace("no-print", "no-kanji"))
    [kanji] = (await published(lsp, uri, after=before)).diagnostics
    assert kanji.code == "no-kanji" and span(kanji) == (0, 7, 0, 9)

    # Closing CLAUDE.md without saving: the rules on disk apply again.
    before = len(recorder(lsp).published)
    lsp.text_document_did_close(types.DidCloseTextDocumentParams(
        text_document=types.TextDocumentIdentifier(uri=rules_uri)))
    [again] = (await published(lsp, uri, after=before)).diagnostics
    assert again.code == "no-print" and span(again) == (0, 12, 0, 18)


async def test_claude_md_changed_on_disk_rechecks_its_repository(lsp_folders: LspFolders):
    async with session(lsp_folders, WATCHING_FILES) as (client, _):
        await wait_until(lambda: registrations(client), 5, "the watched-files registration")
        [registration] = registrations(client)
        assert registration.method == types.WORKSPACE_DID_CHANGE_WATCHED_FILES
        assert plain(registration.register_options) == {
            "watchers": [{"globPattern": "**/CLAUDE.md"}, {"globPattern": "**/.promptrail.toml"}]}

        claude_md = lsp_folders.repo / "CLAUDE.md"
        claude_md.write_text(RULES)
        uri = did_open(client, lsp_folders.repo / "app.py", f"{LINE}\n")
        elsewhere = did_open(client, lsp_folders.anonymous / "other.py", f"{LINE}\n")  # another repository
        assert found((await published(client, uri, version=1)).diagnostics) == KANJI_AND_PRINT[1:]
        assert not (await published(client, elsewhere, version=1)).diagnostics

        # A checkout brings a new rule: the file changes on disk and the client only says so.
        claude_md.write_text(RULES_WITH_KANJI)
        before = len(recorder(client).published)
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=file_uri(claude_md), type=types.FileChangeType.Changed)]))
        diagnostics = (await published(client, uri, after=before)).diagnostics
        assert found(diagnostics) == KANJI_AND_PRINT
        header = [n for n, line in enumerate(RULES_WITH_KANJI.splitlines(), 1) if line == "[[rule]]"][1]
        assert diagnostics[0].code_description.href == f"{file_uri(claude_md)}#L{header}"

        # Deleted (a branch without it): no rules, no diagnostics.
        claude_md.unlink()
        before = len(recorder(client).published)
        client.workspace_did_change_watched_files(types.DidChangeWatchedFilesParams(changes=[
            types.FileEvent(uri=file_uri(claude_md), type=types.FileChangeType.Deleted)]))
        assert not (await published(client, uri, after=before)).diagnostics
        await asyncio.sleep(0.5)
        assert not recorder(client).diagnostics_of(elsewhere)[1:], "the other repository's rules did not change"


async def test_without_file_watching_a_save_catches_up_with_claude_md_on_disk(lsp: LanguageClient,
                                                                             lsp_folders: LspFolders):
    claude_md = lsp_folders.repo / "CLAUDE.md"
    claude_md.write_text(RULES)
    uri = did_open(lsp, lsp_folders.repo / "app.py", f"{LINE}\n")
    assert found((await published(lsp, uri, version=1)).diagnostics) == KANJI_AND_PRINT[1:]

    # A checkout the client does not report (it watches no files): nothing can notice it...
    claude_md.write_text(RULES_WITH_KANJI)
    before = len(recorder(lsp).published)
    await asyncio.sleep(0.5)
    assert not recorder(lsp).published[before:]
    # ...until the document's next check: saving it checks it against the CLAUDE.md on disk.
    did_save(lsp, uri, f"{LINE}\n")
    assert found((await published(lsp, uri, after=before)).diagnostics) == KANJI_AND_PRINT

    # Saving CLAUDE.md itself re-checks every open document of its repository.
    rules_uri = did_open(lsp, claude_md, RULES_WITH_KANJI, language="markdown")
    await published(lsp, rules_uri, version=1)
    await asyncio.sleep(0.5)  # the re-check its opening set off
    before = len(recorder(lsp).published)
    did_save(lsp, rules_uri, RULES_WITH_KANJI)
    assert found((await published(lsp, uri, after=before)).diagnostics) == KANJI_AND_PRINT


async def test_malformed_rules_are_diagnostics_on_claude_md(lsp: LanguageClient, lsp_folders: LspFolders):
    text = RULES + r'''
More prose 😀 between the blocks.

```promptrail
[[rule]]
id = "broken"
forbid = '(unclosed'

[[rule]]
id = "typo"
forbid = 'TODO'
sevrity = "error"
```
'''
    claude_md = lsp_folders.repo / "CLAUDE.md"
    claude_md.write_text(text)
    lines = text.splitlines()
    regex_line = lines.index("forbid = '(unclosed'")
    typo_line = lines.index('sevrity = "error"')

    rules_uri = did_open(lsp, claude_md, text, language="markdown")
    problems = (await published(lsp, rules_uri, version=1)).diagnostics
    assert [(d.range.start.line, d.code, d.severity, d.source) for d in problems] == [
        (regex_line, "bad-regex", types.DiagnosticSeverity.Error, "CLAUDE.md"),
        (typo_line, "unknown-key", types.DiagnosticSeverity.Error, "CLAUDE.md")]
    assert span(problems[0]) == (regex_line, 0, regex_line, utf16(lines[regex_line]))
    assert problems[0].message.startswith("rule 'broken': bad regex in forbid: missing ), unterminated subpattern")
    assert "did you mean 'severity'?" in problems[1].message

    # The rule that is well-formed still applies.
    uri = did_open(lsp, lsp_folders.repo / "app.py", f"{LINE}  # TODO\n")
    [diagnostic] = (await published(lsp, uri, version=1)).diagnostics
    assert diagnostic.code == "no-print"

    # Fixing the regex in the editor clears its diagnostic and brings the rule to life.
    fixed = text.replace("'(unclosed'", "'\\(unclosed'").replace("sevrity", "severity")
    did_change(lsp, rules_uri, 2, fixed)
    assert not (await published(lsp, rules_uri, version=2)).diagnostics


async def test_duplicate_ids_across_claude_md_files(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    nested = lsp_folders.repo / "pkg" / "CLAUDE.md"
    nested.parent.mkdir()
    text = "# pkg\n\n```promptrail\n[[rule]]\nid = \"no-print\"\nmax_lines = 10\n```\n"
    nested.write_text(text)
    uri = did_open(lsp, nested, text, language="markdown")
    [duplicate] = (await published(lsp, uri, version=1)).diagnostics
    assert duplicate.code == "duplicate-id" and duplicate.range.start.line == 4
    assert "already defined at CLAUDE.md:6" in duplicate.message


async def test_real_world_claude_md_without_rule_blocks_yields_no_diagnostics(lsp: LanguageClient,
                                                                            lsp_folders: LspFolders):
    text = (FIXTURES / "realworld.md").read_text(encoding="utf-8")
    assert "```promptrail" in text, "it quotes rule blocks (indented, or inside other fences) without having one"
    for name, variant in (("CLAUDE.md", text), ("crlf/CLAUDE.md", text.replace("\n", "\r\n"))):
        path = lsp_folders.repo / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(variant.encode("utf-8"))
    uris = [did_open(lsp, lsp_folders.repo / "CLAUDE.md", text, language="markdown"),
            did_open(lsp, lsp_folders.repo / "crlf" / "CLAUDE.md", text.replace("\n", "\r\n"), language="markdown"),
            did_open(lsp, lsp_folders.repo / "app.py", f"{LINE}\nprint('hi')  # TODO 🚀\n")]
    for uri in uris:
        await published(lsp, uri, version=1)
    await asyncio.sleep(0.5)  # any re-check the CLAUDE.md opens set off
    assert all(not params.diagnostics for params in recorder(lsp).published)


async def test_documents_outside_a_repository_get_nothing(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(RULES)
    outside = did_open(lsp, lsp_folders.plain / "script.py", "print('not in a repository')\n")
    untitled = "untitled:Untitled-1"
    lsp.text_document_did_open(types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(
        uri=untitled, language_id="python", version=1, text="print(1)\n")))
    inside = did_open(lsp, lsp_folders.repo / "app.py", "print(1)\n")
    assert len((await published(lsp, inside, version=1)).diagnostics) == 1
    await asyncio.sleep(0.5)
    assert {params.uri for params in recorder(lsp).published} == {inside}
    assert outside and untitled


# -- never blocking ----------------------------------------------------------------------------------
def big_document(lines: int = 14_000) -> str:
    """About 1 MB of Python with emoji and CJK, and a print( every 100th line."""
    out = []
    for n in range(lines):
        if n % 100 == 0:
            out.append(f'    print("状态 {n} ✅")')
        else:
            out.append(f"    value_{n} = compute({n}, 'payload 漢字 {n:06d} padding text')  # 😀 note {n}")
    return "\n".join(out) + "\n"


def slow_rules() -> str:
    """RULES and twenty rules without a literal to pre-filter on: checking ``big_document`` takes
    about a second here, far longer than the time between two keystrokes."""
    return RULES + "".join(
        f"\n```promptrail\n[[rule]]\nid = \"rule-{n}\"\nforbid = 'never_{n}_seen|\\s+$'\nseverity = \"hint\"\n```\n"
        for n in range(20))


def print_spans(number: int, line: str) -> list[tuple[int, int, int, int]]:
    return [(number, utf16(line[:m.start()]), number, utf16(line[:m.start()]) + 6)
            for m in re.finditer(r"\bprint\(", line)]


async def test_diagnostics_keep_up_with_non_stop_typing_in_a_big_document(lsp: LanguageClient,
                                                                         lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(slow_rules())
    text = big_document()
    lines = text.split("\n")
    uri = did_open(lsp, lsp_folders.repo / "big.py", text)
    assert len((await published(lsp, uri, version=1, timeout=60)).diagnostics) == 140
    before = len(recorder(lsp).published)

    # One character every 50 ms at the start of line 7050, for 5 s: "print(x) print(x) pri...".
    typed_at, typing = 7050, "print(x) "
    others = [s for number, line in enumerate(lines) if number != typed_at for s in print_spans(number, line)]
    typed_line = {1: lines[typed_at]}
    version, stop = 1, time.monotonic() + 5
    while time.monotonic() < stop:
        version += 1
        column = version - 2
        char = typing[column % len(typing)]
        typed_line[version] = typed_line[version - 1][:column] + char + typed_line[version - 1][column:]
        where = types.Position(line=typed_at, character=column)
        lsp.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[types.TextDocumentContentChangePartial(range=types.Range(start=where, end=where),
                                                                     text=char)]))
        await asyncio.sleep(0.05)
    last = version

    def expected(at: int) -> list[tuple[int, int, int, int]]:
        return sorted(others + print_spans(typed_at, typed_line[at]))

    await settles_on(lsp, uri, last, expected(last), timeout=30)
    during = [p for p in recorder(lsp).published[before:] if p.uri == uri]
    # Results that were outdated when they arrived are published for the version current then,
    # exact on every line but the one being typed, whose findings wait for the next check.
    for params in during:
        spans = sorted(map(span, params.diagnostics))
        assert spans in (expected(params.version), sorted(others)), f"version {params.version}"
    arrived_while_typing = [p for p in during if p.version < last]
    assert arrived_while_typing, "a user who never pauses saw no diagnostics"
    print(f"\n{len(arrived_while_typing)} publications during {last - 1} edits of a 1 MB document, "
          f"versions {[p.version for p in during]}")


async def test_code_lens_is_answered_while_a_big_document_is_checked(lsp: LanguageClient, lsp_folders: LspFolders):
    (lsp_folders.repo / "CLAUDE.md").write_text(slow_rules())  # the lens requests surely meet the check
    text = big_document()
    assert len(text.encode()) > 1_000_000
    small = did_open(lsp, lsp_folders.repo / "README.md", "# project\n", language="markdown")
    await published(lsp, small, version=1)  # the repository is open and warm

    big = did_open(lsp, lsp_folders.repo / "big.py", text)
    started = time.perf_counter()
    checked = asyncio.ensure_future(published(lsp, big, version=1, timeout=60))
    latencies = []
    while not checked.done():
        sent = time.perf_counter()
        lenses = await lsp.text_document_code_lens_async(
            types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=small)))
        latencies.append(time.perf_counter() - sent)
        assert not lenses
    result = await checked
    elapsed = time.perf_counter() - started
    assert len(result.diagnostics) == 140 and {d.code for d in result.diagnostics} == {"no-print"}
    assert span(result.diagnostics[1]) == (100, 4, 100, 10)
    latencies.sort()
    print(f"\n{len(latencies)} codeLens requests answered while a {len(text.encode()) / 1e6:.2f} MB document was "
          f"checked ({elapsed * 1000:.0f} ms until its {len(result.diagnostics)} diagnostics arrived): "
          f"median {latencies[len(latencies) // 2] * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} ms")
