"""Ending the processes promptrail starts (the claude CLI, gate checks, the anthropic agent's
commands). Each runs in its own process group (``start_new_session=True``) so that ending it
reaches everything it started; these helpers end such a group and reap its leader on every path.
"""

from __future__ import annotations

import asyncio
import os
import signal

_EXIT_POLL_INTERVAL = 0.02
_SIGKILL_EXIT_TIMEOUT = 10.0  # SIGKILL cannot be ignored; only a process stuck in the kernel waits


async def exited(proc: asyncio.subprocess.Process, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the process to exit.

    Polls ``returncode`` because ``proc.wait()`` also waits for the pipes to close, and a process
    that left the group (its own ``setsid``) can hold them open for as long as it likes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while proc.returncode is None and loop.time() < deadline:
        await asyncio.sleep(_EXIT_POLL_INTERVAL)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


def close_pipes(proc: asyncio.subprocess.Process) -> None:
    # The only way to drop pipes that an escaped process still holds: asyncio has no public one.
    # Once the process has exited, closing its transport just closes the pipes (and lets wait()
    # return); left open, the transport would be finalised later, possibly on a closed loop.
    transport = getattr(proc, "_transport", None)
    if transport is not None:
        transport.close()


async def end_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """SIGTERM the group, SIGKILL it after ``grace`` seconds, drop its pipes and reap the leader."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        await exited(proc, grace)
    # Even when the leader is gone: whatever it started (a background job) must not outlive it.
    # The group id cannot have been reused while any member is still alive, and with none alive
    # the signal finds nobody.
    signal_group(proc.pid, signal.SIGKILL)
    await exited(proc, _SIGKILL_EXIT_TIMEOUT)
    close_pipes(proc)
    await proc.wait()
