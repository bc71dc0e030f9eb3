"""Which process owns a run, and whether that process is still alive.

An owner is `host:pid:start` where `start` is the process start time from /proc (clock ticks since boot). The start
time matters in containers: a restarted API often gets the same host name and the same pid (1), and only the start
time tells the new process from the dead one.
"""
from __future__ import annotations

import os
import socket
from functools import cache


def _start_ticks(pid: int) -> str:
    """Field 22 of /proc/<pid>/stat, or "" where /proc is not there (then only the pid is compared)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            stat = f.read()
    except OSError:
        return ""
    # the command name (field 2) may hold spaces and parentheses: split after its closing parenthesis
    return stat.rsplit(")", 1)[-1].split()[19]


@cache
def _current(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}:{_start_ticks(pid)}"


def current_owner() -> str:
    """The owner string of this process."""
    return _current(os.getpid())


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def owner_is_dead(owner: str | None) -> bool:
    """True only when `owner` is a process of this host that is certainly gone. Other hosts: False (unknown)."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if not _pid_exists(pid):
        return True
    return bool(start) and _start_ticks(pid) not in ("", start)
