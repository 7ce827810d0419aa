"""The lab's image archives import into containerd's k8s.io namespace and their images run.

A throwaway containerd (own config, socket, root and state under /tmp, CRI off) is started for
the module and removed with everything it made. Needs root, containerd, ctr and runc (`make
lab-packages`); builds the archives first if they are missing (cold: ~10 min).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from experiment_lab.images import (
    KEY_LABEL,
    MLFLOW_IMAGE,
    NAMESPACE,
    OPERATOR_IMAGE,
    PAUSE_IMAGE,
    SEED_MLFLOW_IMAGE,
    ImageArchive,
    ensure_images,
    import_images,
)

TOOLS = ("containerd", "ctr", "runc", "buildah")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="containerd needs root"),
    pytest.mark.skipif(bool(missing), reason=f"missing {missing}: run `make lab-packages`"),
    pytest.mark.timeout(1800),  # a cold build of the archives takes ~10 min
]

CONFIG = """version = 2
root = "{dir}/root"
state = "{dir}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{dir}/containerd.sock"
[ttrpc]
  address = "{dir}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"""


@dataclass
class Containerd:
    directory: Path
    address: Path

    def ctr(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        result = subprocess.run(
            ["ctr", "--address", str(self.address), "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout + result.stderr

    def exec(self, container: str, exec_id: str, *args: str) -> str:
        return self.ctr("task", "exec", "--exec-id", exec_id, container, *args, check=False)

    def status(self, container: str) -> str:
        """The task's status (RUNNING, STOPPED, ...), '' when it has none."""
        for line in self.ctr("task", "ls", check=False).splitlines()[1:]:
            fields = line.split()
            if fields and fields[0] == container:
                return fields[-1]
        return ""

    def wait_stopped(self, container: str, seconds: float = 10) -> str:
        deadline = time.monotonic() + seconds
        while self.status(container) == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.status(container)

    def remove(self, container: str) -> None:
        """Kill a container's task if it runs, delete it and the cgroups runc made for it."""
        self.ctr("task", "kill", "--signal", "SIGKILL", container, check=False)
        self.wait_stopped(container)
        self.ctr("task", "delete", container, check=False)
        self.ctr("containers", "delete", container, check=False)
        for parent in Path("/sys/fs/cgroup").glob(f"*/{NAMESPACE}"):
            with contextlib.suppress(OSError):
                (parent / container).rmdir()

    def remove_cgroup_parents(self) -> None:
        """ctr puts containers under <controller>/k8s.io: remove it when it is empty."""
        for parent in Path("/sys/fs/cgroup").glob(f"*/{NAMESPACE}"):
            with contextlib.suppress(OSError):  # not empty: another containerd uses it
                parent.rmdir()


@pytest.fixture(scope="module")
def archives() -> list[ImageArchive]:
    return ensure_images()


@pytest.fixture(scope="module")
def containerd() -> Iterator[Containerd]:
    directory = Path(tempfile.mkdtemp(prefix="lab-images-", dir="/tmp"))  # a short socket path
    (directory / "config.toml").write_text(CONFIG.format(dir=directory))
    with (directory / "containerd.log").open("w") as log:
        process = subprocess.Popen(
            ["containerd", "--config", str(directory / "config.toml")],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Containerd(directory, directory / "containerd.sock")
    try:
        for _ in range(100):
            if handle.address.exists() and "Server" in handle.ctr("version", check=False):
                break
            assert process.poll() is None, (directory / "containerd.log").read_text()[-2000:]
            time.sleep(0.1)
        yield handle
    finally:
        for line in handle.ctr("containers", "ls", "--quiet", check=False).split():
            handle.remove(line)
        handle.remove_cgroup_parents()
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        mounts = [m.split()[1] for m in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(directory))), reverse=True):
            subprocess.run(["umount", mount], check=False)
        shutil.rmtree(directory)


@pytest.fixture(scope="module")
def imported(archives: list[ImageArchive], containerd: Containerd) -> list[ImageArchive]:
    import_images("ctr", containerd.address, archives)
    return archives


def test_every_reference_is_imported_and_labelled_with_its_key(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    listing = containerd.ctr("images", "ls")
    for archive in imported:
        for reference in archive.references:
            line = next(ln for ln in listing.splitlines() if ln.startswith(reference + " "))
            assert f"{KEY_LABEL}={archive.key}" in line
    assert {PAUSE_IMAGE, MLFLOW_IMAGE, SEED_MLFLOW_IMAGE, OPERATOR_IMAGE} <= {
        ref for archive in imported for ref in archive.references
    }


def test_an_unchanged_archive_is_not_imported_again(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    messages: list[str] = []
    import_images("ctr", containerd.address, imported, progress=messages.append)
    assert messages == [f"{', '.join(a.references)}: already imported" for a in imported]


def test_pause_runs_and_stops_on_sigterm(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    assert "pause 3.10" in containerd.ctr(
        "run", "--rm", PAUSE_IMAGE, "pause-version", "/pause", "-v"
    )
    containerd.ctr("run", "--detach", PAUSE_IMAGE, "pause")
    try:
        containerd.ctr("task", "kill", "--signal", "SIGTERM", "pause")
        assert containerd.wait_stopped("pause") == "STOPPED"
        deleted = containerd.ctr("task", "delete", "pause")
        assert "exit code" not in deleted  # ctr reports only a non-zero exit
    finally:
        containerd.remove("pause")


def test_mlflow_runs_as_non_root_on_a_read_only_root(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    script = (
        "id -u; mlflow --version; "
        'python -c "import psycopg, pymysql, boto3, sqlalchemy; print(sqlalchemy.__version__)"'
    )
    out = containerd.ctr(
        "run", "--rm", "--read-only",
        "--mount", "type=tmpfs,src=tmpfs,dst=/tmp,options=rw:nosuid:nodev",
        MLFLOW_IMAGE, "mlflow-check",
        "setpriv", "--reuid", "65532", "--regid", "65532", "--clear-groups", "sh", "-c", script,
    )  # fmt: skip
    assert out.splitlines()[:2] == ["65532", "mlflow, version 3.17.2"], out
    assert out.splitlines()[2].startswith("2."), out  # SQLAlchemy 2 (psycopg 3 for postgresql://)


def test_seed_contract_serves_health_from_its_own_cmd(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    containerd.ctr(
        "run", "--detach",
        "--env", "ARTIFACT_ROOT=/mlflow/artifacts",
        "--env", "MLFLOW_WORKERS=1",
        "--env", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false",
        SEED_MLFLOW_IMAGE, "seed",
    )  # fmt: skip
    probe = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:5000/health').read())"
    try:
        answer = ""
        for attempt in range(120):  # bounded: MLflow is healthy in 8-30 s
            answer = containerd.exec("seed", f"probe{attempt}", "python", "-c", probe)
            if "b'OK'" in answer:
                break
            time.sleep(1)
        assert "b'OK'" in answer
        ps = "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done"
        processes = containerd.exec("seed", "ps", "sh", "-c", ps)
        # The seed's shell-form CMD: sh -c expands the variables, mlflow gets the values.
        assert "/bin/sh -c mlflow server --backend-store-uri ${BACKEND_URI}" in processes
        assert "--backend-store-uri sqlite:////mlflow/mlflow.db" in processes
        assert "--default-artifact-root /mlflow/artifacts" in processes
    finally:
        containerd.remove("seed")


def test_operator_image_runs_as_its_user(
    imported: list[ImageArchive], containerd: Containerd
) -> None:
    script = "id -u; experiment-operator run --help >/dev/null && echo ok"
    out = containerd.ctr("run", "--rm", "--read-only", OPERATOR_IMAGE, "op", "sh", "-c", script)
    assert out.split() == ["65532", "ok"], out
