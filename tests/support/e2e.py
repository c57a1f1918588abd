"""End-to-end tests need real tools (the claude CLI, Neovim). Missing one skips the test on a
developer's machine, but fails it in CI (``PROMPTRAIL_REQUIRE_E2E=1``), so an end-to-end test can
never silently not run there."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing_tool(message: str) -> NoReturn:
    if os.environ.get("PROMPTRAIL_REQUIRE_E2E") == "1":
        pytest.fail(f"{message} (PROMPTRAIL_REQUIRE_E2E=1)")
    pytest.skip(message)
