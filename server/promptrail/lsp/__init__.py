"""The editor face: a pygls language server over the same core as the CLI.

Thin by design, it only translates between LSP and the core:

- ``server``   the server class, the wiring of LSP methods, and ``serve`` (stdio, TCP, WebSocket);
- ``folders``  which repository a request is about (one lazily opened ``Workspace`` per folder);
- ``commands`` ``workspace/executeCommand`` handlers → ``runs`` and ``queries``;
- ``stream``   a run's core events → ``promptrail/log``, ``promptrail/runStatus``, ``$/progress``;
- ``lenses``   ``textDocument/codeLens`` over AI-written lines, from ``queries.Attribution``.
- ``diagnostics`` CLAUDE.md rule violations as ``textDocument/publishDiagnostics``, from ``standards``.

Nothing here is imported by the core, and nothing heavy (git, SQLite) is imported before the
first request that needs it, so ``initialize`` answers as fast as a bare pygls server.
"""
