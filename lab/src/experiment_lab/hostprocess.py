"""Server processes of the lab (control plane, node, Traefik, S3, PostgreSQL) that die with it.

Each child asks the kernel for SIGKILL when its parent goes (PR_SET_PDEATHSIG), so a lab killed
with -9 leaves no server holding a port or a data directory. The signal follows the *thread*
that started the child: start them from a thread that lives as long as the lab (the main
thread, or the event loop's default executor, whose workers live until the loop closes).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class StartError(RuntimeError):
    """A server failed to start; the message names its log file."""


def free_port(address: str = "127.0.0.1") -> int:
    """A TCP port free on `address` now (the usual race: use it soon)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        port: int = sock.getsockname()[1]
        return port


def user_group(user: str) -> int:
    """`user`'s primary group: a process run as `user` should not keep root's groups."""
    return pwd.getpwnam(user).pw_gid


def die_with_parent() -> None:
    """`preexec_fn`: SIGKILL this child when its parent exits (runs after any setuid, which
    would clear the setting)."""
    parent = os.getppid()
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(126)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(126)


@dataclass
class Component:
    """One server process of the lab and where its log goes."""

    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    """Run as this user, in its primary group only (PostgreSQL refuses to run as root)."""
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log_file:
            # Same process group as the caller, so `kill -- -PGID` of a supervisor stops all.
            self.process = subprocess.Popen(
                self.argv,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                user=self.user,
                group=user_group(self.user) if self.user else None,
                extra_groups=[] if self.user else None,
                preexec_fn=die_with_parent,
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_healthy(self, healthy: Callable[[], bool], timeout: float = 60.0) -> None:
        """Poll `healthy` until true; raise naming the log (with its tail) if the process
        exits first or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                break
            if healthy():
                return
            time.sleep(0.1)
        reason = "exited" if not self.running() else f"not healthy after {timeout}s"
        raise StartError(f"{self.name} {reason}; log: {self.log_path}\n{self.tail()}")
