"""The container image's entrypoint, run the way the image runs it (see docs/image.md).

Always: the wheel, installed into a clean venv, runs as UID 65532 with no writable home or
working directory. Where buildah and mmdebstrap are installed (as root): the real image, built
from the Dockerfile by hack/image/build.sh.
"""

from __future__ import annotations

import base64
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from experiment_lab.binaries import REPO_ROOT
from experiment_lab.serviceaccount import OperatorAccount
from experiment_operator.manifests.install import RUN_AS_USER

AS_IMAGE_USER = (
    ["setpriv", f"--reuid={RUN_AS_USER}", f"--regid={RUN_AS_USER}", "--clear-groups"]
    if os.geteuid() == 0
    else []
)


def _interpreter() -> str:
    """A Python that UID 65532 may run: Debian's (what the image uses), else the base one."""
    debian = Path("/usr/bin/python3")
    if (
        debian.exists()
        and subprocess.run(
            [debian, "-c", "import ensurepip, sys; assert sys.version_info >= (3, 11)"],
            capture_output=True,
        ).returncode
        == 0
    ):
        return str(debian)
    return getattr(sys, "_base_executable", sys.executable)


@pytest.fixture(scope="module")
def public_dir() -> Iterator[Path]:
    """A directory outside root's private temp dirs, readable (not writable) by UID 65532."""
    path = Path(tempfile.mkdtemp(prefix="experiment-operator-image-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def installed(public_dir: Path) -> Path:
    """The built wheel installed into a clean venv; returns the venv's bin directory."""
    wheels, venv = public_dir / "wheels", public_dir / "venv"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", wheels, REPO_ROOT], check=True)
    subprocess.run([_interpreter(), "-m", "venv", venv], check=True)
    wheel = next(wheels.glob("experiment_operator-*.whl"))
    subprocess.run([venv / "bin" / "pip", "install", "--quiet", wheel], check=True)
    return venv / "bin"


@pytest.fixture(scope="module")
def readonly_cwd(public_dir: Path) -> Path:
    path = public_dir / "readonly"
    path.mkdir()
    path.chmod(0o555)
    return path


def _image_env(bin_dir: Path) -> dict[str, str]:
    """The image's environment: no home, no bytecode writes, the venv first on PATH."""
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }


def test_wheel_runs_as_non_root_without_writable_paths(installed: Path, readonly_cwd: Path) -> None:
    env = _image_env(installed)
    code = "import os, experiment_operator.manifests; print(os.getuid())"
    whoami = subprocess.run(
        [*AS_IMAGE_USER, "python", "-c", code],
        env=env, cwd=readonly_cwd, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert whoami.stdout.strip() == str(os.getuid() if not AS_IMAGE_USER else RUN_AS_USER)
    helped = subprocess.run(
        [*AS_IMAGE_USER, "experiment-operator", "run", "--help"],
        env=env, cwd=readonly_cwd, capture_output=True, text=True,
    )  # fmt: skip
    assert helped.returncode == 0, helped.stderr
    assert "--ingress-controller" in helped.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _run_briefly(
    command: list[str], env: dict[str, str], cwd: Path, probe_port: int, *, graceful: bool = True
) -> None:
    """Start `run`, wait until /readyz answers 200, then SIGTERM: it must exit cleanly (unless
    `graceful` is off: `buildah run` kills its process instead of forwarding the signal)."""
    process = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while not _ready(probe_port):
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, "operator not ready within 60 s"
            time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0 or not graceful, output
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _run_flags(account: OperatorAccount, probe_port: int) -> list[str]:
    return [
        "run",
        f"--health-probe-bind-address=127.0.0.1:{probe_port}",
        f"--metrics-bind-address=127.0.0.1:{_free_port()}",
        "--leader-elect",
        f"--leader-election-namespace={account.namespace}",
    ]


def _readable_kubeconfig(account: OperatorAccount, public_dir: Path) -> Path:
    """The account's kubeconfig with the CA inlined: the image's user (and the container) can
    read neither the test cluster's private directory nor a path outside the image."""
    config = yaml.safe_load(account.kubeconfig.read_text())
    for entry in config["clusters"]:
        cluster = entry["cluster"]
        if "certificate-authority" in cluster:
            ca = Path(cluster.pop("certificate-authority")).read_bytes()
            cluster["certificate-authority-data"] = base64.b64encode(ca).decode()
    path = public_dir / account.kubeconfig.name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o644)
    return path


@pytest.mark.usefixtures("trackingserver_crd")
def test_wheel_runs_the_operator_as_its_service_account(
    installed: Path, readonly_cwd: Path, operator_sa: OperatorAccount, public_dir: Path
) -> None:
    port = _free_port()
    env = {
        **_image_env(installed),
        "KUBECONFIG": str(_readable_kubeconfig(operator_sa, public_dir)),
    }
    _run_briefly(
        [*AS_IMAGE_USER, "experiment-operator", *_run_flags(operator_sa, port)],
        env, readonly_cwd, port,
    )  # fmt: skip


BUILDAH_READY = os.geteuid() == 0 and all(shutil.which(t) for t in ("buildah", "mmdebstrap"))


@pytest.mark.skipif(not BUILDAH_READY, reason="needs root, buildah and mmdebstrap (docs/image.md)")
@pytest.mark.usefixtures("trackingserver_crd")
def test_image_built_by_buildah_runs_as_its_service_account(
    operator_sa: OperatorAccount, public_dir: Path
) -> None:
    built = subprocess.run(
        ["bash", str(REPO_ROOT / "hack" / "image" / "build.sh")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    image = built.stdout.strip()
    env = {**os.environ, "BUILDAH_ISOLATION": "chroot"}
    container = subprocess.run(
        ["buildah", "from", "--pull-never", image], env=env, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    try:
        buildah_run = ["buildah", "run", "--volume", f"{public_dir}:/kube:ro", container, "--"]
        user = subprocess.run(
            [*buildah_run, "id", "-u"], env=env, capture_output=True, text=True, check=True
        )
        assert user.stdout.strip() == str(RUN_AS_USER)
        kubeconfig = _readable_kubeconfig(operator_sa, public_dir)
        port = _free_port()
        _run_briefly(
            [*buildah_run, "env", f"KUBECONFIG=/kube/{kubeconfig.name}",
             "experiment-operator", *_run_flags(operator_sa, port)],
            env, public_dir, port, graceful=False,
        )  # fmt: skip
    finally:
        subprocess.run(["buildah", "rm", container], env=env, capture_output=True, check=False)
