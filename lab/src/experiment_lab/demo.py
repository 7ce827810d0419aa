"""``make demo``: a local control plane, the operator as its ServiceAccount, the seed's sample.

Steps, each printed as it happens: build what is missing, start the control plane with the
third-party CRDs, install our CRD and RBAC, run ``experiment-operator run`` authenticated with a
TokenRequest token of its ServiceAccount, apply the sample TrackingServer, wait for
``Ready=True``, then show the TrackingServer, its children and the Events. It keeps running until
Ctrl-C; ``--once`` stops after showing (the test suite runs that, so the demo cannot rot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from lightkube import AsyncClient, KubeConfig

from experiment_lab.binaries import REPO_ROOT, find_binaries
from experiment_lab.cluster import Cluster
from experiment_lab.controlplane import ControlPlane
from experiment_lab.serviceaccount import operator_account

SAMPLE = REPO_ROOT / "config" / "samples" / "experiment_v1alpha2_trackingserver.yaml"
SAMPLE_NAMESPACE = "aiscope-devops-platform"
OPERATOR_NAMESPACE = "experiment-operator-system"
CHILD_KINDS = (
    "deployments,services,secrets,persistentvolumeclaims,"
    "ingressroutes.traefik.io,middlewares.traefik.io"
)


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def show(cluster: Cluster, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    print(cluster.kubectl(*args, check=False).stdout.rstrip(), flush=True)


def ready_condition(cluster: Cluster) -> tuple[str, str, str]:
    out = cluster.kubectl(
        "get",
        "trackingserver",
        "trackingserver",
        "-n",
        SAMPLE_NAMESPACE,
        "-o",
        "json",
        check=False,
    ).stdout
    conditions = json.loads(out).get("status", {}).get("conditions", []) if out else []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return ("Unknown", "Pending", "waiting for the operator's first status")
    return (ready["status"], ready.get("reason", ""), ready.get("message", ""))


def wait_ready(cluster: Cluster, operator: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: tuple[str, str, str] | None = None
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited with {operator.returncode}; see its log")
        current = ready_condition(cluster)
        if current != last:
            say(f"Ready={current[0]} reason={current[1]}: {current[2]}")
            last = current
        if current[0] == "True":
            return
        time.sleep(0.5)
    raise SystemExit(f"TrackingServer not Ready within {timeout:.0f}s")


def run(workdir: Path, once: bool) -> None:
    say("finding or building the control-plane binaries (a cold build prints progress)")
    binaries = find_binaries()
    shutil.rmtree(workdir, ignore_errors=True)
    plane = ControlPlane(workdir / "controlplane", binaries)
    say("starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok")
    plane.start(progress=say)
    cluster = Cluster(plane.kubeconfig, str(binaries / "kubectl"), plane)
    operator: subprocess.Popen[bytes] | None = None
    runner = asyncio.Runner()
    try:
        say("installing the Traefik and Gateway API CRDs, our CRD and namespaces")
        cluster.install_third_party_crds()
        cluster.kubectl("apply", "--server-side", "-k", str(REPO_ROOT / "config" / "crd"))
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        for namespace in (OPERATOR_NAMESPACE, SAMPLE_NAMESPACE):
            cluster.kubectl("create", "namespace", namespace)
        # The whole control plane is thrown away at the end, so the account is never torn down;
        # the runner stays open meanwhile (closing it would run the account's clean-up).
        client = AsyncClient(config=KubeConfig.from_file(plane.kubeconfig))
        account = operator_account(client, plane.kubeconfig, OPERATOR_NAMESPACE, workdir)
        sa = runner.run(account.__aenter__())
        say(f"running the operator as {sa.username} (log: {workdir / 'operator.log'})")
        with (workdir / "operator.log").open("wb") as log:
            operator = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("experiment-operator")), "run",
                    f"--kubeconfig={sa.kubeconfig}",
                    f"--leader-election-namespace={OPERATOR_NAMESPACE}",
                    "--metrics-bind-address=127.0.0.1:0",
                    "--health-probe-bind-address=127.0.0.1:0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        say(f"applying the seed's sample TrackingServer ({SAMPLE.relative_to(REPO_ROOT)})")
        cluster.kubectl("apply", "-n", SAMPLE_NAMESPACE, "-f", str(SAMPLE))
        wait_ready(cluster, operator, timeout=120)
        show(cluster, "get", "trackingservers", "-A", "-o", "wide")
        show(cluster, "get", CHILD_KINDS, "-n", SAMPLE_NAMESPACE, "-o", "wide")
        show(cluster, "get", "pods", "-n", SAMPLE_NAMESPACE)
        show(cluster, "get", "events", "-n", SAMPLE_NAMESPACE, "--sort-by=.lastTimestamp")
        if not once:
            say(f"running; try: KUBECONFIG={plane.kubeconfig} kubectl get trackingservers -A")
            say("press Ctrl-C to stop")
            signal.pause()
    finally:
        if operator is not None and operator.poll() is None:
            operator.send_signal(signal.SIGTERM)
            operator.wait(15)
        runner.close()
        plane.stop()
        say("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment_lab.demo")
    parser.add_argument("--once", action="store_true", help="stop after showing the result")
    parser.add_argument(
        "--workdir", type=Path, default=REPO_ROOT / ".local" / "demo", help="state and logs"
    )
    args = parser.parse_args(argv)
    # Stop cleanly on Ctrl-C and on SIGTERM, even where the shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        run(args.workdir.resolve(), args.once)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
