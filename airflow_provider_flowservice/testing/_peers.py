"""Which local process sent a request: the PID owning the client end of a 127.0.0.1 TCP connection.

The deployment test needs to know which Airflow process (which triggerer, which Celery worker) a
request came from, without the client's cooperation. On Linux the kernel answers that: the
connection's socket inode is in ``/proc/net/tcp`` and the process holding it has a
``/proc/<pid>/fd`` entry pointing at ``socket:[inode]``. Elsewhere (or without permission) the
answer is ``None``. Standard library only, like the rest of the emulator.
"""

from __future__ import annotations

import os
from pathlib import Path

_PROC = Path("/proc")


def _hex_port(port: int) -> str:
    return f"{port:04X}"


def _socket_inode(client_port: int, server_port: int) -> str | None:
    """Inode of the client-side socket ``127.0.0.1:client_port -> :server_port`` (IPv4 or IPv6)."""
    local, remote = _hex_port(client_port), _hex_port(server_port)
    for table in ("tcp", "tcp6"):
        try:
            lines = (_PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            if fields[1].endswith(":" + local) and fields[2].endswith(":" + remote):
                return fields[9]
    return None


def peer_pid(client_port: int, server_port: int) -> int | None:
    """The PID of the process holding the client end of a connection to ``server_port``, or None."""
    inode = _socket_inode(client_port, server_port)
    if inode is None or inode == "0":
        return None
    target = f"socket:[{inode}]"
    own = os.getpid()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            fds = os.listdir(entry / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(entry / "fd" / fd) == target:
                    return int(entry.name)
            except OSError:
                continue
    return None


def parents_of(pid: int, limit: int = 32) -> tuple[int, ...]:
    """``pid``'s parent, grandparent, ... up to init, read now: a short-lived sender (a task process
    gone by the time a test looks) can still be placed in its process tree."""
    chain: list[int] = []
    for _ in range(limit):
        try:
            status = (_PROC / str(pid) / "status").read_text()
        except OSError:
            break
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)
        if ppid <= 1:
            break
        chain.append(ppid)
        pid = ppid
    return tuple(chain)
