"""The Helm chart lints, renders to objects the API server accepts, and installs."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from experiment_lab.binaries import REPO_ROOT, find_binaries
from experiment_lab.cluster import Cluster, Kubectl
from experiment_operator import cli
from experiment_operator.manifests.configuration import HELM_VALUES, documented_options
from experiment_operator.rbac import rules
from experiment_operator.trackingserver.children import IngressController

CHART = str(REPO_ROOT / "charts" / "experiment-operator")
Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="module")
def helm(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """Run the helm built by hack/controlplane/build.sh, with its state in a temp dir."""
    binary = find_binaries() / "helm"
    home = tmp_path_factory.mktemp("helm")
    env = {**cluster.env, **{f"HELM_{d}_HOME": str(home / d) for d in ("CACHE", "CONFIG", "DATA")}}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(binary), *args], env=env, capture_output=True, text=True, check=False
        )
        if check:
            assert result.returncode == 0, result.stdout + result.stderr
        return result

    return run


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "watchNamespaces={team-a,team-b}", "--set", "ingressController=nginx"],
        ["--set", "metrics.serviceMonitor.enabled=true", "--set", "replicaCount=1"],
        ["--set", "leaderElection.enabled=false", "--set", "replicaCount=1"],
    ],
)
def test_lint(helm: Helm, values: list[str]) -> None:
    helm("lint", "--strict", CHART, *values)


def test_values_are_validated(helm: Helm) -> None:
    bad = helm("template", "x", CHART, "--set", "ingressController=haproxy", check=False)
    assert bad.returncode != 0
    assert "ingressController" in bad.stderr
    fight = helm("template", "x", CHART, "--set", "leaderElection.enabled=false", check=False)
    assert "needs leaderElection.enabled" in fight.stderr


def test_template_cluster_wide(helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    out = helm("template", "rel", CHART, "-n", namespace, "--include-crds").stdout
    objects = _objects(out)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted([
        "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
        "Role", "RoleBinding", "FlowSchema", "Deployment", "Service", "PodDisruptionBudget",
    ])  # fmt: skip
    flow = next(o for o in objects if o["kind"] == "FlowSchema")
    assert flow["spec"]["priorityLevelConfiguration"] == {"name": "leader-election"}
    assert flow["spec"]["rules"][0]["resourceRules"][0]["namespaces"] == [namespace]
    role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert role["rules"] == rules()
    env = {
        e["name"]: e.get("value")
        for e in next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["EXPERIMENT_OPERATOR_INGRESS_CONTROLLER"] == "auto"
    assert env["EXPERIMENT_OPERATOR_GATEWAY_NAME"] == ""  # unset: spec.gatewayRef per CR
    assert env["EXPERIMENT_OPERATOR_LEADER_ELECT"] == "true"
    assert "EXPERIMENT_OPERATOR_NAMESPACE" not in env
    dry = kubectl("apply", "--dry-run=server", "-f", "-", input=out, check=False)
    assert dry.returncode == 0, dry.stderr


def test_template_namespaced(helm: Helm, kubectl: Kubectl, namespace: str) -> None:
    out = helm(
        "template", "rel", CHART, "-n", namespace, "--set", f"watchNamespaces={{{namespace}}}"
    ).stdout
    objects = _objects(out)
    assert not [o for o in objects if o["kind"].startswith("Cluster")]
    roles = [o for o in objects if o["kind"] == "Role" and o["rules"] == rules()]
    assert [r["metadata"]["namespace"] for r in roles] == [namespace]
    dry = kubectl("apply", "--dry-run=server", "-f", "-", input=out, check=False)
    assert dry.returncode == 0, dry.stderr


def _operator_options(helm: Helm, *values: str) -> cli.RunOptions:
    """The options `experiment-operator run` reads from the environment the chart renders."""
    out = helm("template", "rel", CHART, "-n", "ops", *values).stdout
    deployment = next(o for o in _objects(out) if o["kind"] == "Deployment")
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    known = {o.env for o in documented_options()}
    assert {e["name"] for e in env if e["name"].startswith(cli.ENV_PREFIX)} <= known
    top, run = cli.parsers()
    environ = {e["name"]: e["value"] for e in env if "value" in e}
    return cli.run_options(run, top.parse_args(["run"]), environ, Path("/nonexistent"))


def test_every_documented_value_sets_its_option(helm: Helm) -> None:
    """The Helm column of docs/configuration.md, in formats the CLI accepts."""
    given = {
        "ingressController": "nginx",
        "traefikGroup": "traefik.containo.us",
        "nginxIngressClass": "internal",
        "gateway.name": "public",
        "gateway.namespace": "gateway-system",
        "gateway.sectionName": "websecure",
        "gateway.httpsPort": "8443",
        "gateway.listenerSets": "false",
        "watchNamespaces": "{team-a,team-b}",
        "mlflowImage": "registry.example/mlflow:3.17.2",
        "maxConcurrentReconciles": "7",
        "leaderElection.enabled": "false",
        "leaderElection.id": "ops-lease",
        "metrics.port": "9090",
        "healthProbePort": "9091",
        "logFormat": "text",
        "logLevel": "debug",
        "resyncPeriod": "1h30m",
    }
    assert set(HELM_VALUES.values()) == set(given)
    values = [a for k, v in {**given, "replicaCount": "1"}.items() for a in ("--set", f"{k}={v}")]
    assert _operator_options(helm, *values) == cli.RunOptions(
        ingress_controller=IngressController.NGINX,
        traefik_group="traefik.containo.us",
        nginx_ingress_class="internal",
        gateway_name="public",
        gateway_namespace="gateway-system",
        gateway_section_name="websecure",
        gateway_https_port=8443,
        gateway_listener_sets=False,
        mlflow_image="registry.example/mlflow:3.17.2",
        namespaces=["team-a", "team-b"],
        max_concurrent_reconciles=7,
        leader_elect=False,
        leader_election_namespace="default",  # the chart sets it from the Pod: not a value
        leader_election_id="ops-lease",
        leader_election_identity=None,  # from the Pod: not a value
        pod_uid=None,
        leader_election_lease_duration=15.0,
        leader_election_renew_deadline=10.0,
        leader_election_retry_period=2.0,
        metrics_bind_address=("0.0.0.0", 9090),
        health_probe_bind_address=("0.0.0.0", 9091),
        log_format="text",
        log_level="debug",
        resync_period=5400.0,
        kubeconfig=None,
    )


def test_default_values_and_a_resync_period_in_seconds(helm: Helm) -> None:
    options = _operator_options(helm, "--set", "resyncPeriod=3600")
    assert (options.leader_elect, options.log_format, options.namespaces) == (True, "json", None)
    assert options.resync_period == 3600.0
    assert options.leader_election_id == "rel-experiment-operator", "one Lease per release"
    bad = helm("template", "x", CHART, "--set", "resyncPeriod=ten hours", check=False)
    assert bad.returncode != 0
    assert "resyncPeriod" in bad.stderr


@pytest.fixture
def restricted_namespace(kubectl: Kubectl, namespace: str) -> str:
    """The test namespace, enforcing the restricted Pod Security Standard."""
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    return namespace


@pytest.fixture
def release(helm: Helm, restricted_namespace: str) -> Iterator[str]:
    yield "ops"
    helm("uninstall", "ops", "-n", restricted_namespace, "--wait", check=False)


def test_install(
    cluster: Cluster, helm: Helm, kubectl: Kubectl, restricted_namespace: str, release: str
) -> None:
    if cluster.existing:
        pytest.skip("a real install would start the operator image in a shared cluster")
    ns = restricted_namespace
    # --wait: both replicas' Pods were admitted under `restricted` and became Ready (kwok).
    helm("install", release, CHART, "-n", ns, "--wait", "--timeout", "120s")
    name = f"{release}-experiment-operator"
    deployment = yaml.safe_load(kubectl("get", "deploy", name, "-n", ns, "-o", "yaml").stdout)
    assert deployment["status"]["availableReplicas"] == 2
    kubectl("get", "crd", "trackingservers.experiment.aiscope")
    kubectl("get", "pdb", name, "-n", ns)
    account = f"system:serviceaccount:{ns}:{name}"

    def can(*args: str) -> str:
        return kubectl("auth", "can-i", f"--as={account}", *args, check=False).stdout.strip()

    assert can("watch", "trackingservers.experiment.aiscope", "-A") == "yes"
    assert can("create", "leases.coordination.k8s.io", "-n", ns) == "yes"
    assert can("create", "leases.coordination.k8s.io", "-n", "default") == "no"
    assert can("get", "configmaps", "-n", ns) == "no"
    status = helm("status", release, "-n", ns).stdout
    assert "STATUS: deployed" in status
