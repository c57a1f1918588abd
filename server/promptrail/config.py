"""Configuration: ``.promptrail.toml`` at the repository root, over the user's file, over defaults.

Only the sections the core understands are read here (``[agent]``); later features add theirs
(``[gate]``, ``[budget]``, ``[prices]``) through ``Config.section``. A malformed file is one
``PromptrailError`` naming the file and line; an unknown key in a known section is one too,
because a typo that silently does nothing is worse than an error.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptrail.errors import PromptrailError

AGENTS = ("claude-cli", "replay", "anthropic")
MODES = ("isolated", "direct")
REPO_CONFIG_NAME = ".promptrail.toml"
#: Every section some part of promptrail reads; a typo in a section name must not silently do nothing.
KNOWN_SECTIONS = {"agent", "anthropic", "budget", "gate", "prices"}

_AGENT_KEYS = {"name": str, "model": str, "mode": str, "claude_path": str, "transcript": str,
               "silence_timeout_s": (int, float)}


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


@dataclass
class Config:
    agent: AgentSettings = field(default_factory=AgentSettings)
    #: Every section as read (repo over user), for features that own other sections.
    raw: dict[str, Any] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; errors become one line naming the file and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PromptrailError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise PromptrailError(f"{path} is not UTF-8 text; save it as UTF-8") from None
    return parse_toml(text, str(path))


def parse_toml(text: str, origin: str) -> dict[str, Any]:
    """Parse TOML text from ``origin`` (a path, or ``branch:path`` for committed files)."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib says "... (at line N, column M)"; restate it as origin:line first.
        message = str(exc)
        line = ""
        if "(at line " in message:
            where = message.rsplit("(at line ", 1)[1].rstrip(")")
            line = ":" + where.split(",")[0]
            message = message.rsplit(" (at line ", 1)[0]
        raise PromptrailError(f"{origin}{line}: invalid TOML: {message}; fix the file and retry") from None


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _line_of_key(path: Path, key: str) -> str:
    try:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith(key):
                return f":{number}"
    except OSError:
        pass
    return ""


def _agent_settings(raw: dict[str, Any], sources: dict[str, Path]) -> AgentSettings:
    settings = AgentSettings()
    section = raw.get("agent", {})
    for key, value in section.items():
        origin = sources.get(key, Path(REPO_CONFIG_NAME))
        where = f"{origin}{_line_of_key(origin, key)}"
        if key not in _AGENT_KEYS:
            raise PromptrailError(f"{where}: unknown key '{key}' in [agent]; "
                                  f"known keys: {', '.join(sorted(_AGENT_KEYS))}")
        if not isinstance(value, _AGENT_KEYS[key]) or isinstance(value, bool):
            raise PromptrailError(f"{where}: [agent] {key} has the wrong type")
        setattr(settings, key, value)
    if settings.silence_timeout_s <= 0:
        raise PromptrailError(f"[agent] silence_timeout_s must be a positive number of seconds, "
                              f"not {settings.silence_timeout_s}")
    if settings.name not in AGENTS:
        raise PromptrailError(f"[agent] name = '{settings.name}' is not an agent; use one of {', '.join(AGENTS)}")
    if settings.mode not in MODES:
        raise PromptrailError(f"[agent] mode = '{settings.mode}' is not a mode; use one of {', '.join(MODES)}")
    return settings


def load_config(repo_root: Path | None) -> Config:
    """Defaults, then the user file, then the repository's ``.promptrail.toml``."""
    merged: dict[str, Any] = {}
    sources: list[Path] = []
    agent_key_source: dict[str, Path] = {}
    candidates = [user_config_path()]
    if repo_root is not None:
        candidates.append(Path(repo_root) / REPO_CONFIG_NAME)
    for path in candidates:
        if path.is_file():
            data = read_toml(path)
            for key in data.get("agent", {}) if isinstance(data.get("agent"), dict) else {}:
                agent_key_source[key] = path
            if "agent" in data and not isinstance(data["agent"], dict):
                raise PromptrailError(f"{path}{_line_of_key(path, 'agent')}: 'agent' must be a table ([agent])")
            unknown = sorted(set(data) - KNOWN_SECTIONS)
            if unknown:
                raise PromptrailError(f"{path}{_line_of_key(path, '[' + unknown[0])}: unknown section "
                                      f"[{unknown[0]}]; known: {', '.join(sorted(KNOWN_SECTIONS))}")
            merged = _merge(merged, data)
            sources.append(path)
    return Config(agent=_agent_settings(merged, agent_key_source), raw=merged, sources=sources)
