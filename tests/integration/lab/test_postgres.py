"""PostgreSQL as the lab runs it: a role and database per call, reached over TCP with scram."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from experiment_lab.postgres import PostgresServer, bin_dir


def test_create_database_gives_a_private_login(
    tmp_path: Path, require: Callable[[bool, str], None]
) -> None:
    require(os.geteuid() == 0, "root (postgres runs as the postgres user)")
    try:
        bin_dir()
    except FileNotFoundError as err:
        require(False, str(err))
    server = PostgresServer(tmp_path, "127.0.0.1")
    server.start()
    try:
        uri_a = server.create_database("team_a")
        uri_b = server.create_database("team_b")
        with psycopg.connect(uri_a) as conn:
            row = conn.execute("SELECT current_user, current_database()").fetchone()
            assert row == ("team_a", "team_a")
            conn.execute("CREATE TABLE runs (id int)")
        # Another team's role cannot log in to this database.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(uri_b.rsplit("/", 1)[0] + "/team_a").close()
        wrong = uri_a.replace("@", "x@", 1)
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(wrong).close()
    finally:
        data = server.data_root
        server.stop()
    assert data is not None
    assert not data.exists()
