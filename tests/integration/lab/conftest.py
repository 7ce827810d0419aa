"""The node tier's host-process fixtures: a missing tool fails on the local lab, where `make
lab-packages` and `make lab-binaries` provide it, and skips only on an existing cluster."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from experiment_lab.binaries import find_lab_binaries
from experiment_lab.cluster import use_existing_cluster


def require(available: bool, what: str) -> None:
    """Skip (existing cluster) or fail (local lab) when `what` is missing."""
    if available:
        return
    if use_existing_cluster():
        pytest.skip(f"{what} is missing (USE_EXISTING_CLUSTER: the lab's tools are optional)")
    pytest.fail(f"{what} is missing: run `make lab-packages lab-binaries`")


Require = Callable[[bool, str], None]


@pytest.fixture(scope="session", name="require")
def require_fixture() -> Require:
    return require


@pytest.fixture(scope="session")
def lab_binary() -> Callable[[str], Path]:
    """Path of a lab binary (traefik, versitygw, ...), required as above."""
    directory: list[Path] = []

    def find(name: str) -> Path:
        if not directory:
            try:
                directory.append(find_lab_binaries())
            except (OSError, RuntimeError) as err:
                require(False, f"the lab binaries ({err})")
        path = directory[0] / name
        require(path.is_file(), str(path))
        return path

    return find
