"""The start-up baseline for bench_startup.py: a pygls 2 language server that registers nothing.

Started exactly like ``promptrail serve`` (``[sys.executable, script]`` over stdio), so the ratio
between the two is what promptrail adds on top of Python + pygls + lsprotocol.
"""

from pygls.lsp.server import LanguageServer

if __name__ == "__main__":
    LanguageServer("minimal", "0").start_io()
