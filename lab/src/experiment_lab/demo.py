"""``make demo``: the node tier with the operator, the seed's sample and a tenant you can use.

Steps, each printed as it happens: build what is missing, start the lab (control plane, a real
node, Traefik, S3, PostgreSQL), install our CRD and RBAC, run ``experiment-operator run``
authenticated with a TokenRequest token of its ServiceAccount, apply the seed's sample
TrackingServer unchanged and a ``demo`` tenant (PostgreSQL backend, artifacts proxied to S3),
wait until both are Ready and serving through Traefik, log one run so the UI is not empty, then
print the URL and commands that work from this host. It keeps running until Ctrl-C; ``--once``
stops after that (the test suite runs it, so the demo cannot rot).
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
import urllib.request
from pathlib import Path

from lightkube import AsyncClient, KubeConfig

from experiment_lab.binaries import REPO_ROOT
from experiment_lab.cluster import Cluster
from experiment_lab.images import MLFLOW_IMAGE
from experiment_lab.lab import Lab, running_lab
from experiment_lab.serviceaccount import operator_account
from experiment_lab.serving import SEED_HOST, SEED_PREFIX, SEED_SAMPLE, apply, until

SAMPLE_NAMESPACE = "aiscope-devops-platform"
OPERATOR_NAMESPACE = "experiment-operator-system"
DEMO_NAMESPACE = "demo"
CHILD_KINDS = (
    "deployments,services,secrets,persistentvolumeclaims,"
    "ingressroutes.traefik.io,middlewares.traefik.io"
)
READY_TIMEOUT = 300.0


def say(message: str) -> None:
    print(f"[demo] {message}", flush=True)


def show(cluster: Cluster, *args: str) -> None:
    print(f"\n$ kubectl {' '.join(args)}", flush=True)
    print(cluster.kubectl(*args, check=False).stdout.rstrip(), flush=True)


def ready_condition(cluster: Cluster, namespace: str, name: str) -> tuple[str, str, str]:
    out = cluster.kubectl(
        "get", "trackingserver", name, "-n", namespace, "-o", "json", check=False
    ).stdout
    conditions = json.loads(out).get("status", {}).get("conditions", []) if out else []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    if ready is None:
        return ("Unknown", "Pending", "waiting for the operator's first status")
    return (ready["status"], ready.get("reason", ""), ready.get("message", ""))


def wait_ready(
    cluster: Cluster, namespace: str, name: str, operator: subprocess.Popen[bytes]
) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last: tuple[str, str, str] | None = None
    while time.monotonic() < deadline:
        if operator.poll() is not None:
            raise SystemExit(f"the operator exited with {operator.returncode}; see its log")
        current = ready_condition(cluster, namespace, name)
        if current != last:
            say(f"{namespace}/{name}: Ready={current[0]} reason={current[1]}: {current[2]}")
            last = current
        if current[0] == "True":
            return
        time.sleep(1)
    raise SystemExit(f"{namespace}/{name} not Ready within {READY_TIMEOUT:.0f}s")


def demo_tenant(lab: Lab, url: str) -> dict[str, object]:
    """A TrackingServer as a platform team would write one: PostgreSQL, S3 behind MLflow."""
    backend_uri = lab.postgres.create_database("demo")
    lab.s3.create_bucket("demo")
    lab.cluster.kubectl(
        "create", "secret", "generic", "demo-s3", "-n", DEMO_NAMESPACE,
        f"--from-literal=AWS_ACCESS_KEY_ID={lab.s3.access_key}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={lab.s3.secret_key}",
    )  # fmt: skip
    return {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": "mlflow", "namespace": DEMO_NAMESPACE},
        "spec": {
            "size": 1,
            "url": url,
            "backend_uri": backend_uri,
            "artifact_root": "s3://demo/artifacts",
            "serveArtifacts": True,
            "s3_endpoint_url": lab.s3.endpoint_url,
            "s3CredentialsSecretRef": {"name": "demo-s3"},
        },
    }


def log_sample_run(url: str, workdir: Path) -> str:
    """One run with a parameter, a metric and an artifact, so the UI has something to show."""
    from mlflow.tracking import MlflowClient  # heavy import, only when needed

    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("demo")
    experiment_id = experiment.experiment_id if experiment else client.create_experiment("demo")
    run = client.create_run(experiment_id, run_name="first-run")
    client.log_param(run.info.run_id, "learning_rate", 0.01)
    for step, loss in enumerate((0.9, 0.5, 0.3)):
        client.log_metric(run.info.run_id, "loss", loss, step=step)
    notes = workdir / "notes.txt"
    notes.write_text("logged by make demo\n")
    client.log_artifact(run.info.run_id, str(notes))
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def run(workdir: Path, once: bool, port: int) -> None:
    url = f"http://localhost:{port}/demo"
    say("building or finding the binaries and images (a cold build prints progress)")
    with running_lab(workdir / "lab", say, extra_web=f"127.0.0.1:{port}") as lab:
        cluster = lab.cluster
        operator: subprocess.Popen[bytes] | None = None
        runner = asyncio.Runner()
        try:
            say("installing our CRD and namespaces")
            cluster.kubectl("apply", "--server-side", "-k", str(REPO_ROOT / "config" / "crd"))
            cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
            for namespace in (OPERATOR_NAMESPACE, SAMPLE_NAMESPACE, DEMO_NAMESPACE):
                cluster.kubectl("create", "namespace", namespace)
            # The lab is thrown away at the end, so the account is never torn down; the runner
            # stays open meanwhile (closing it would run the account's clean-up).
            client = AsyncClient(config=KubeConfig.from_file(cluster.kubeconfig))
            account = operator_account(client, cluster.kubeconfig, OPERATOR_NAMESPACE, workdir)
            sa = runner.run(account.__aenter__())
            say(f"running the operator as {sa.username} (log: {workdir / 'operator.log'})")
            with (workdir / "operator.log").open("wb") as log:
                operator = subprocess.Popen(
                    [
                        str(Path(sys.executable).with_name("experiment-operator")), "run",
                        f"--kubeconfig={sa.kubeconfig}",
                        f"--leader-election-namespace={OPERATOR_NAMESPACE}",
                        f"--mlflow-image={MLFLOW_IMAGE}",
                        "--metrics-bind-address=127.0.0.1:0",
                        "--health-probe-bind-address=127.0.0.1:0",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )  # fmt: skip
            say(f"applying the seed's sample unchanged ({SEED_SAMPLE.relative_to(REPO_ROOT)})")
            cluster.kubectl("apply", "-n", SAMPLE_NAMESPACE, "-f", str(SEED_SAMPLE))
            say(f"applying the demo tenant: {url} (PostgreSQL, artifacts in S3 through MLflow)")
            manifest = demo_tenant(lab, url)
            apply(cluster, DEMO_NAMESPACE, manifest)
            wait_ready(cluster, SAMPLE_NAMESPACE, "trackingserver", operator)
            wait_ready(cluster, DEMO_NAMESPACE, "mlflow", operator)
            until(
                "the seed's sample through Traefik",
                lambda: lab.ingress.get(SEED_HOST, f"{SEED_PREFIX}/", tls=True)[0] == 200,
                timeout=120,
            )
            until("the demo tenant through Traefik", lambda: http_ok(f"{url}/"), timeout=120)
            run_id = log_sample_run(url, workdir)
            say(f"logged run {run_id} in experiment 'demo'")
            show(cluster, "get", "trackingservers", "-A", "-o", "wide")
            show(cluster, "get", CHILD_KINDS, "-n", DEMO_NAMESPACE, "-o", "wide")
            show(cluster, "get", "pods", "-A", "-o", "wide")
            show(cluster, "get", "events", "-n", SAMPLE_NAMESPACE, "--sort-by=.lastTimestamp")
            print(
                f"""
MLflow is up. From this host:
  UI:       {url}/   (open it in a browser)
  client:   MLFLOW_TRACKING_URI={url} python -c "import mlflow; mlflow.set_experiment('demo'); \\
              mlflow.start_run(); mlflow.log_metric('accuracy', 0.93); mlflow.end_run()"
  REST:     curl -s '{url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo'
  seed CR:  curl -sk --resolve {SEED_HOST}:443:{lab.slot.host_ip} https://{SEED_HOST}{SEED_PREFIX}/
  cluster:  KUBECONFIG={cluster.kubeconfig} kubectl get trackingservers -A
""",
                flush=True,
            )
            if not once:
                say("press Ctrl-C to stop")
                signal.pause()
        finally:
            if operator is not None and operator.poll() is None:
                operator.send_signal(signal.SIGTERM)
                operator.wait(15)
            runner.close()
    say("stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiment_lab.demo")
    parser.add_argument("--once", action="store_true", help="stop after showing the result")
    parser.add_argument(
        "--workdir", type=Path, default=REPO_ROOT / ".local" / "demo", help="state and logs"
    )
    parser.add_argument("--port", type=int, default=8080, help="the demo tenant's local port")
    args = parser.parse_args(argv)
    # Stop cleanly on Ctrl-C and on SIGTERM, even where the shell started us with SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    try:
        run(args.workdir.resolve(), args.once, args.port)
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
