"""A real PostgreSQL server (Debian's) for MLflow backend stores, one role per database.

initdb and postgres refuse root, so both run as the `postgres` user on a data directory under
/tmp (which that user can reach, unlike a workdir under /root); `stop` removes it. TCP clients
from anywhere (Pods on the pod network too) authenticate with scram passwords made per run and
registered with the leak check.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from experiment_lab import credentials
from experiment_lab.hostprocess import Component, free_port, user_group

log = logging.getLogger(__name__)

OS_USER = "postgres"
SUPERUSER = "lab_admin"
NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SETTINGS = {
    # Throwaway data: durability only costs time here.
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
HBA_ANY_HOST = "host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n"


def bin_dir() -> Path:
    """The newest installed server's bin directory (/usr/lib/postgresql/<major>/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise FileNotFoundError("no /usr/lib/postgresql/*/bin/initdb: run `make lab-packages`")
    return found[-1].parent


def remove_orphans() -> None:
    """Remove data directories of labs that were killed before `stop` (their pid is gone)."""
    for path in Path(tempfile.gettempdir()).glob("experiment-lab-*-postgres"):
        pid = path.name.split("-")[2]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(path, ignore_errors=True)


def uri(user: str, password: str, address: str, port: int, database: str) -> str:
    return f"postgresql://{user}:{password}@{address}:{port}/{database}"


@dataclass
class PostgresServer:
    """postgres on `address:port` (port 0: a free one); its log goes to `workdir`."""

    workdir: Path
    address: str
    port: int = 0
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    _data_root: Path | None = field(default=None, init=False, repr=False)
    _process: Component | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        credentials.register(self.password, "the lab PostgreSQL superuser password")

    @property
    def data_root(self) -> Path | None:
        """The directory under /tmp holding the data and the socket while running."""
        return self._data_root

    @property
    def admin_uri(self) -> str:
        return uri(SUPERUSER, self.password, self.address, self.port, "postgres")

    def start(self, progress: Callable[[str], None] = log.info) -> None:
        """initdb a fresh cluster, start postgres and wait until the superuser can log in."""
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port(self.address)
        binaries = bin_dir()
        remove_orphans()
        self._data_root = Path(
            tempfile.mkdtemp(prefix=f"experiment-lab-{os.getpid()}-", suffix="-postgres")
        )
        try:
            data = self._initdb(binaries)
            argv = [str(binaries / "postgres"), "-D", str(data), "-h", self.address]
            argv += ["-p", str(self.port), "-k", str(self._data_root)]
            for key, value in SETTINGS.items():
                argv += ["-c", f"{key}={value}"]
            self._process = Component(
                "postgres",
                argv,
                self.workdir / "postgres.log",
                user=OS_USER,
                stop_signal=signal.SIGINT,  # "fast" shutdown: do not wait for clients
            )
            self._process.start()
            self._process.wait_healthy(self._healthy)
        except BaseException:
            self.stop()
            raise
        progress(f"PostgreSQL serving {self.address}:{self.port}")

    def stop(self) -> None:
        """Stop postgres and remove its data directory; safe to call twice."""
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._data_root is not None:
            shutil.rmtree(self._data_root, ignore_errors=True)
            self._data_root = None

    def create_database(self, name: str) -> str:
        """A database owned by a new role of the same name with its own password, closed to
        other roles; returns the role's URI."""
        if not NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {NAME.pattern}")
        password = secrets.token_urlsafe(24)
        credentials.register(password, f"the lab PostgreSQL password of role {name}")
        with psycopg.connect(self.admin_uri, autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
            ident = sql.Identifier(name)
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident, ident))
            # Other roles (other teams) may not even connect.
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident))
        return uri(name, password, self.address, self.port, name)

    def _initdb(self, binaries: Path) -> Path:
        assert self._data_root is not None
        root, data, pwfile = self._data_root, self._data_root / "data", self._data_root / "pw"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        account = pwd.getpwnam(OS_USER)
        for path in (root, pwfile):
            os.chown(path, account.pw_uid, account.pw_gid)
        argv = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER]
        argv += [f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"]
        argv += ["--no-locale", "--no-sync"]
        result = subprocess.run(
            argv,
            user=OS_USER,
            group=user_group(OS_USER),
            extra_groups=[],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        pwfile.unlink()
        (self.workdir / "initdb.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{result.stderr.strip()}")
        with (data / "pg_hba.conf").open("a") as hba:
            hba.write(HBA_ANY_HOST)
        return data

    def _healthy(self) -> bool:
        try:
            with psycopg.connect(self.admin_uri, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False
