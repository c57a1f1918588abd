"""Configuration: ``.promptrail.toml`` at the repository root, over the user's file, over defaults.

Only the sections the core understands are read here (``[agent]``); later features add theirs
(``[gate]``, ``[budget]``, ``[prices]``) through ``Config.section`` and ``Config.parse``. Every
mistake is one ``PromptrailError`` that starts with the file and line at fault (the user's file or
the repository's, whichever set the value): a malformed file, an unknown section or key (a typo
that silently does nothing is worse than an error), a value of the wrong type or out of range.
A section's own parser reports a bad value as a ``ConfigValueError`` naming the key;
``Config.parse`` turns that into the file and line.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence, TypeVar

from promptrail.errors import PromptrailError

AGENTS = ("claude-cli", "replay", "anthropic")
MODES = ("isolated", "direct")
REPO_CONFIG_NAME = ".promptrail.toml"
#: Every section some part of promptrail reads; a typo in a section name must not silently do nothing.
KNOWN_SECTIONS = {"agent", "anthropic", "budget", "gate", "prices"}

_AGENT_KEYS = {"name": str, "model": str, "mode": str, "claude_path": str, "transcript": str,
               "silence_timeout_s": (int, float)}

Parsed = TypeVar("Parsed")
KeyPath = Sequence[str | int]


class ConfigValueError(PromptrailError):
    """A bad value in a section, raised by the section's parser with the key path at fault
    (``("model", 2, "input")``: key ``input`` of the third ``[[prices.model]]`` table) and the
    message "what is wrong; what to do"; ``Config.parse`` prefixes the file and line."""

    def __init__(self, message: str, *path: str | int) -> None:
        super().__init__(message)
        self.path = path


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "promptrail" / "config.toml"


@dataclass
class AgentSettings:
    name: str = "claude-cli"
    model: str | None = None
    mode: str = "isolated"
    claude_path: str = "claude"
    transcript: str | None = None
    silence_timeout_s: float = 600.0


@dataclass(frozen=True)
class ConfigFile:
    """One configuration file as read: where it is, its text (for line numbers) and its data."""

    path: Path
    text: str
    data: dict[str, Any]

    def where(self, keys: KeyPath) -> str:
        line = line_of(self.text, keys)
        return f"{self.path}:{line}" if line else str(self.path)


@dataclass
class Config:
    agent: AgentSettings = field(default_factory=AgentSettings)
    #: Every section as read (repo over user), for features that own other sections.
    raw: dict[str, Any] = field(default_factory=dict)
    #: The files read, lowest precedence first (the user's, then the repository's).
    files: list[ConfigFile] = field(default_factory=list)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}

    def parse(self, name: str, parser: Callable[[dict[str, Any]], Parsed]) -> Parsed:
        """``parser(section)``; a ``ConfigValueError`` it raises comes back as FILE:LINE: message."""
        try:
            return parser(self.section(name))
        except ConfigValueError as exc:
            raise PromptrailError(f"{self.where(name, *exc.path)}: {exc}") from None

    def where(self, *keys: str | int) -> str:
        """FILE:LINE of the value at ``keys`` (section first), in the file that set it: the
        repository's over the user's, as they were merged."""
        for file in reversed(self.files):
            if _sets(file.data, keys):
                return file.where(keys)
        return REPO_CONFIG_NAME


def _sets(data: dict[str, Any], keys: KeyPath) -> bool:
    node: Any = data
    for key in keys:
        if isinstance(key, int) or not isinstance(node, dict):
            return True  # an array (of tables) comes whole from the one file that set it
        if key not in node:
            return False
        node = node[key]
    return True


def line_of(text: str, keys: KeyPath) -> int | None:
    """The line of TOML ``text`` that sets ``keys`` (an ``int`` picks the n-th table of an array of
    tables), else the line of the nearest enclosing key or table that is written; None if none is.
    A line scanner, not a parser: good enough to point at a line, never used to read values."""
    target = tuple(keys)
    for size in range(len(target), 0, -1):
        for number, path in _written_paths(text):
            if path[:size] == target[:size]:
                return number
    return None


def _written_paths(text: str) -> Iterator[tuple[int, tuple[str | int, ...]]]:
    table: tuple[str | int, ...] = ()
    tables_seen: dict[tuple[str | int, ...], int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("[["):
            name = _dotted(stripped[2:].split("]]", 1)[0])
            tables_seen[name] = tables_seen.get(name, -1) + 1
            table = name + (tables_seen[name],)
            yield number, table
        elif stripped.startswith("["):
            table = _dotted(stripped[1:].split("]", 1)[0])
            yield number, table
        elif "=" in stripped and not stripped.startswith("#"):
            yield number, table + _dotted(stripped.split("=", 1)[0])


def _dotted(key: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in key.split("."))


def _read_file(path: Path) -> ConfigFile:
    """Read and parse one file; errors become one line naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptrailError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PromptrailError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    return ConfigFile(path, text, parse_toml(text, str(path)))


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    """Parse TOML text from ``origin`` (a path, or ``branch:path`` for committed files)."""
    text = text.removeprefix("\ufeff")  # a byte-order mark, as some Windows editors write
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)"; restate it as origin:line first.
        message = str(exc)
        line = ""
        if "(at line " in message:
            where = message.rsplit("(at line ", 1)[1].rstrip(")")
            line = ":" + where.split(",")[0]
            message = message.rsplit(" (at line ", 1)[0]
        raise PromptrailError(f"{origin}{line}: invalid TOML: {message}; fix the file and retry") from None
    # TOML allows nan and inf, but no setting means either (a timeout of nan s stops at once).
    for keys, value in _floats(data):
        if not math.isfinite(value):
            line = line_of(text, keys)
            raise PromptrailError(f"{origin}{f':{line}' if line else ''}: {'.'.join(map(str, keys))} = {value} "
                                  "is not a usable number; write a finite one")
    return data


def _floats(node: Any, keys: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], float]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _floats(value, keys + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _floats(value, keys + (index,))
    elif isinstance(node, float):
        yield keys, node


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def agent_settings(section: dict[str, Any]) -> AgentSettings:
    """``[agent]`` as settings; every mistake is a ``ConfigValueError`` naming its key."""
    settings = AgentSettings()
    for key, value in section.items():
        if key not in _AGENT_KEYS:
            raise ConfigValueError(f"unknown key '{key}' in [agent]; known keys: {', '.join(sorted(_AGENT_KEYS))}",
                                   key)
        if not isinstance(value, _AGENT_KEYS[key]) or isinstance(value, bool):
            kind = "a string" if _AGENT_KEYS[key] is str else "a number"
            raise ConfigValueError(f"[agent] {key} must be {kind}, not {value!r}", key)
        setattr(settings, key, value)
    if settings.silence_timeout_s <= 0:
        raise ConfigValueError(f"[agent] silence_timeout_s must be a positive number of seconds, "
                               f"not {settings.silence_timeout_s}", "silence_timeout_s")
    if settings.name not in AGENTS:
        raise ConfigValueError(f"[agent] name = '{settings.name}' is not an agent; use one of {', '.join(AGENTS)}",
                               "name")
    if settings.mode not in MODES:
        raise ConfigValueError(f"[agent] mode = '{settings.mode}' is not a mode; use one of {', '.join(MODES)}",
                               "mode")
    return settings


def load_config(repo_root: Path | None) -> Config:
    """Defaults, then the user file, then the repository's ``.promptrail.toml``."""
    config = Config()
    candidates = [user_config_path()]
    if repo_root is not None:
        candidates.append(Path(repo_root) / REPO_CONFIG_NAME)
    for path in candidates:
        if not path.is_file():
            if path.exists() or path.is_symlink():  # a folder, a dangling link, a device: not silently skipped
                raise PromptrailError(f"{path} is not a readable file; make it a TOML file or remove it")
            continue
        file = _read_file(path)
        for name, value in file.data.items():
            if name not in KNOWN_SECTIONS:
                raise PromptrailError(f"{file.where([name])}: unknown section [{name}]; "
                                      f"known: {', '.join(sorted(KNOWN_SECTIONS))}")
            if not isinstance(value, dict):
                raise PromptrailError(f"{file.where([name])}: '{name}' must be a table; write it as [{name}]")
        config.raw = _merge(config.raw, file.data)
        config.files.append(file)
    config.agent = config.parse("agent", agent_settings)
    return config
