"""Where a kernel's ipc sockets live (shared by the provider and the cell server).

ipykernel binds ipc sockets at ``<ip>-<port>``; we set ``ip`` to
``<sock_dir>/k`` and fixed small "ports", so the paths are short and known to
both sides without a connection file.  Pure, no I/O.
"""
from __future__ import annotations

PORTS = {"shell": 1, "iopub": 2, "stdin": 3, "control": 4, "hb": 5}
MAX_SOCKET_PATH = 107     # sun_path is 108 bytes with the trailing NUL


def ipc_prefix(sock_dir: str) -> str:
    return f"{sock_dir.rstrip('/')}/k"


def socket_path(sock_dir: str, channel: str) -> str:
    return f"{ipc_prefix(sock_dir)}-{PORTS[channel]}"


def endpoint(sock_dir: str, channel: str) -> str:
    return "ipc://" + socket_path(sock_dir, channel)


def check_sock_dir(sock_dir: str) -> None:
    """ValueError when a socket path under ``sock_dir`` would be too long."""
    longest = max(len(socket_path(sock_dir, c).encode()) for c in PORTS)
    if longest >= MAX_SOCKET_PATH:
        raise ValueError(f"socket directory {sock_dir!r} is too long: socket paths "
                         f"would be {longest} bytes (must stay under {MAX_SOCKET_PATH})")
