"""Every routing mode through a real Traefik: one live TrackingServer switched from mode to mode.

One MLflow Pod serves the whole module: switching routes changes no Pod, and each test reads the
run the first one logged (its SQLite file lives in the Pod). Each test restarts the module's
operator with the next mode's options, waits until the namespace holds exactly that mode's
routing objects (the previous mode's are gone), then proves the server through them over TLS
verified against the server's own certificate: MLflow's UI, MLflow's client reading that run
and logging to it, and Chromium rendering the UI under the prefix with the experiment listed.
Tests run in file order:

1. `auto` on the lab: a `traefik.io` IngressRoute, Traefik v3's kubernetesCRD provider;
2. `nginx` with IngressClass `traefik`: an Ingress served by the kubernetesIngress provider;
3. `nginx` with IngressClass `nginx`: the same Ingress served by kubernetesIngressNGINX;
4. `gateway`: an HTTPRoute on a Gateway of another namespace (HTTP and HTTPS listeners on
   Traefik's entry points, the certificate on the Gateway), accepted by Traefik's
   kubernetesGateway, which reaches `Ready`;
5. the same Gateway refusing routes from other namespaces: Traefik's reason in `Ready`;
6. `traefik` with the group `traefik.containo.us`: served by a Traefik v2.11 started here on
   other ports of the lab's address, and not by the lab's Traefik v3;
7. back to `auto`: the legacy objects are removed and `traefik.io` serves again.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Response
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from experiment_lab import serving
from experiment_lab.binaries import find_lab_binaries
from experiment_lab.browser import chromium, spki_hash
from experiment_lab.cluster import Cluster
from experiment_lab.ingress import IngressEndpoint
from experiment_lab.lab import Lab
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.objects import tls_pair
from experiment_lab.operator import operator_in_thread
from experiment_lab.tier import NodeTier
from experiment_lab.traefik import Traefik
from experiment_operator.trackingserver.children import ChildOptions, IngressController
from experiment_operator.trackingserver.gateway import ParentGateway

NAME = "mlflow"
HOST = "routes.lab.test"
PREFIX = "/team"
GATEWAY = "lab-gateway"
GATEWAY_SECRET = "routes-tls"
LEGACY_PORTS = (8080, 8443)
"""Traefik v2's web and websecure on the lab's address (80 and 443 are the lab's v3)."""
ROUTING_KINDS = ",".join(
    (
        "ingressroutes.traefik.io",
        "middlewares.traefik.io",
        "ingressroutes.traefik.containo.us",
        "middlewares.traefik.containo.us",
        "ingresses.networking.k8s.io",
        "httproutes.gateway.networking.k8s.io",
    )
)
INGRESS_ROUTE = ("traefik.io/v1alpha1", "IngressRoute", NAME)
LEGACY_INGRESS_ROUTE = ("traefik.containo.us/v1alpha1", "IngressRoute", NAME)
INGRESS = ("networking.k8s.io/v1", "Ingress", NAME)
HTTP_ROUTE = ("gateway.networking.k8s.io/v1", "HTTPRoute", NAME)


class Switchboard:
    """The module's operator, one at a time: `use` stops the running one and starts another
    with new options (what a platform team does by changing `--ingress-controller`)."""

    def __init__(self, kubeconfig: Path, namespace: str, mlflow_image: str) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.mlflow_image = mlflow_image
        self._stack = ExitStack()

    def use(self, mode: IngressController, **options: Any) -> None:
        self.close()
        chosen = ChildOptions(ingress_controller=mode, mlflow_image=self.mlflow_image, **options)
        self._stack.enter_context(
            operator_in_thread(self.kubeconfig, namespaces=[self.namespace], options=chosen)
        )

    def close(self) -> None:
        self._stack.close()
        self._stack = ExitStack()


@pytest.fixture(scope="module")
def lab(node_tier: NodeTier) -> Lab:
    return node_tier.need_lab()  # Traefik's router list and a second Traefik on its address


@pytest.fixture(scope="module")
def namespaces(cluster: Cluster) -> Iterator[tuple[str, str]]:
    """The TrackingServer's namespace and the Gateway's."""
    suffix = uuid.uuid4().hex[:6]
    names = (f"routes-{suffix}", f"gateway-{suffix}")
    for name in names:
        cluster.kubectl("create", "namespace", name)
    yield names
    for name in names:
        cluster.kubectl("delete", "namespace", name, "--wait=false")


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """The server's certificate, key, and the certificate as the clients' only trust anchor."""
    cert, key = tls_pair(HOST)
    ca_file = tmp_path_factory.mktemp("routes") / "ca.pem"
    ca_file.write_text(cert)
    return cert, key, ca_file


@pytest.fixture(scope="module")
def switchboard(
    node_tier: NodeTier, lab: Lab, trackingserver_crd: str, namespaces: tuple[str, str]
) -> Iterator[Switchboard]:
    board = Switchboard(node_tier.cluster.kubeconfig, namespaces[0], node_tier.mlflow_image)
    yield board
    board.close()


@pytest.fixture(scope="module")
def logged() -> dict[str, str]:
    """What the first test logged (experiment name, run id), read by the others."""
    return {}


def routing_objects(cluster: Cluster, namespace: str) -> set[tuple[str, str, str]]:
    out = cluster.kubectl("get", ROUTING_KINDS, "-n", namespace, "-o", "json").stdout
    return {
        (o["apiVersion"], o["kind"], o["metadata"]["name"])
        for o in json.loads(out)["items"]
        if not o["metadata"].get("deletionTimestamp")
    }


def until_only(cluster: Cluster, namespace: str, *expected: tuple[str, str, str]) -> None:
    serving.until(
        f"exactly {expected} in {namespace}",
        lambda: routing_objects(cluster, namespace) == set(expected),
    )


def providers(traefik: Traefik) -> set[str]:
    """The providers of the Traefik routers that match the module's host."""
    return {r["provider"] for r in traefik.routers() if HOST in r.get("rule", "")}


def until_ready(cluster: Cluster, namespace: str) -> None:
    serving.until(
        "Ready=True",
        lambda: serving.ready_condition(cluster, namespace, NAME).get("status") == "True",
    )


def prove_serving(
    endpoint: IngressEndpoint, tls: tuple[str, str, Path], logged: dict[str, str]
) -> None:
    """The UI, the client (read the first run, log to it) and Chromium, all over verified TLS."""
    cert, _, ca_file = tls
    serving.until(
        f"MLflow's UI at https://{HOST}:{endpoint.websecure_port}{PREFIX}/",
        lambda: serving.serves_mlflow(endpoint, HOST, f"{PREFIX}/", ca_file=ca_file),
    )
    with mlflow_client(endpoint, HOST, PREFIX, ca_file=ca_file) as client:
        if not logged:
            experiment = f"routes-{uuid.uuid4().hex[:6]}"
            run = client.create_run(client.create_experiment(experiment))
            logged.update(experiment=experiment, run_id=run.info.run_id)
        run_id = logged["run_id"]
        steps = len(client.get_metric_history(run_id, "switches"))
        client.log_metric(run_id, "switches", 1.0, step=steps)
        assert len(client.get_metric_history(run_id, "switches")) == steps + 1
    port = "" if endpoint.websecure_port == 443 else f":{endpoint.websecure_port}"
    rules = f"MAP {HOST} {endpoint.address}"
    with chromium(rules, ignore_cert_spki=[spki_hash(cert.encode())]) as browser:
        failed: list[str] = []

        def note(response: Response) -> None:
            if not response.ok:
                failed.append(f"{response.status} {response.url}")

        for _ in range(3):  # a page whose first API call failed shows no list: load it again
            page = browser.new_page()
            page.on("response", note)
            page.goto(f"https://{HOST}{port}{PREFIX}/", timeout=60_000)
            listed = page.get_by_text(logged["experiment"]).first
            try:
                listed.wait_for(timeout=30_000)
            except PlaywrightTimeoutError:
                print(f"the UI listed no experiment; failed requests so far: {failed}")
                page.close()
                continue
            assert page.title().endswith("MLflow")
            page.close()
            return
        raise AssertionError(f"the UI never listed the experiment; failed requests: {failed}")


def test_traefik_io_ingressroute_through_traefik_v3(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
) -> None:
    """`auto` on the lab picks traefik.io; the server is made here (the module's one Pod)."""
    namespace = namespaces[0]
    cert, key, _ = tls
    switchboard.use(IngressController.AUTO)
    manifest = {
        "apiVersion": "experiment.aiscope/v1alpha2",
        "kind": "TrackingServer",
        "metadata": {"name": NAME},
        "spec": {
            "size": 1,
            "url": f"https://{HOST}{PREFIX}",
            "backend_uri": "sqlite:////tmp/mlflow.db",
            "artifact_root": "s3://mlflow/",
            "cert": cert,
            "key": key,
        },
    }
    serving.apply(lab.cluster, namespace, manifest)
    until_ready(lab.cluster, namespace)
    until_only(lab.cluster, namespace, INGRESS_ROUTE)
    prove_serving(lab.ingress, tls, logged)
    assert providers(lab.traefik) == {"kubernetescrd"}


def test_nginx_ingress_through_the_kubernetes_ingress_provider(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
) -> None:
    """IngressClass `traefik`: one Prefix Ingress, no annotation, TLS from its Secret."""
    namespace = namespaces[0]
    switchboard.use(IngressController.NGINX, nginx_ingress_class="traefik")
    until_only(lab.cluster, namespace, INGRESS)
    serving.until("Traefik's kubernetesIngress routes it", lambda: providers(lab.traefik))
    prove_serving(lab.ingress, tls, logged)
    assert providers(lab.traefik) == {"kubernetes"}


def test_nginx_ingress_through_the_ingress_nginx_provider(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
) -> None:
    """IngressClass `nginx` (controller k8s.io/ingress-nginx): Traefik's kubernetesIngressNGINX,
    the form a cluster leaving ingress-nginx keeps."""
    namespace = namespaces[0]
    switchboard.use(IngressController.NGINX, nginx_ingress_class="nginx")
    serving.until(
        "the Ingress of class nginx",
        lambda: (
            lab.cluster.kubectl(
                "get", "ingress", NAME, "-n", namespace, "-o", "jsonpath={.spec.ingressClassName}"
            ).stdout
            == "nginx"
        ),
    )
    until_only(lab.cluster, namespace, INGRESS)
    serving.until(
        "only Traefik's kubernetesIngressNGINX routes it",
        lambda: providers(lab.traefik) == {"kubernetesingressnginx"},
    )
    prove_serving(lab.ingress, tls, logged)


def gateway_manifests(
    namespace: str, cert: str, key: str, routes_from: str = "All"
) -> list[dict[str, Any]]:
    """A Gateway on Traefik's entry points (web 80, websecure 443 with the certificate),
    accepting routes from every namespace (`routes_from`), and its TLS Secret."""

    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    everyone = {"namespaces": {"from": routes_from}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": GATEWAY_SECRET, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(cert), "tls.key": b64(key)},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": GATEWAY, "namespace": namespace},
            "spec": {
                "gatewayClassName": "traefik",
                "listeners": [
                    {"name": "web", "port": 80, "protocol": "HTTP", "allowedRoutes": everyone},
                    {
                        "name": "websecure",
                        "port": 443,
                        "protocol": "HTTPS",
                        "hostname": HOST,
                        "tls": {
                            "mode": "Terminate",
                            "certificateRefs": [{"kind": "Secret", "name": GATEWAY_SECRET}],
                        },
                        "allowedRoutes": everyone,
                    },
                ],
            },
        },
    ]


def route_accepted(cluster: Cluster, namespace: str) -> bool:
    out = cluster.kubectl("get", "httproute", NAME, "-n", namespace, "-o", "json").stdout
    parents = json.loads(out).get("status", {}).get("parents", [])
    return any(
        c["type"] == "Accepted" and c["status"] == "True"
        for parent in parents
        for c in parent.get("conditions", [])
    )


def ready_reason(cluster: Cluster, namespace: str) -> tuple[str, str]:
    ready = serving.ready_condition(cluster, namespace, NAME)
    return ready.get("status", ""), ready.get("reason", "")


def test_gateway_api_httproute_through_traefik_v3(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
) -> None:
    """TLS on the Gateway's listener; the CR's cert/key reported unused (Traefik v3.6 has no
    ListenerSet); Traefik's Accepted on the route reaches Ready."""
    namespace, gateway_namespace = namespaces
    cert, key, _ = tls
    for manifest in gateway_manifests(gateway_namespace, cert, key):
        serving.apply(lab.cluster, gateway_namespace, manifest)
    switchboard.use(
        IngressController.GATEWAY,
        gateway=ParentGateway(GATEWAY, gateway_namespace),
        listener_sets_enabled=False,
    )
    until_only(lab.cluster, namespace, HTTP_ROUTE)
    serving.until("Traefik accepts the HTTPRoute", lambda: route_accepted(lab.cluster, namespace))
    until_ready(lab.cluster, namespace)
    out = lab.cluster.kubectl("get", "trackingserver", NAME, "-n", namespace, "-o", "json")
    conditions = json.loads(out.stdout)["status"]["conditions"]
    tls_condition = next(c for c in conditions if c["type"] == "TLS")
    assert (tls_condition["status"], tls_condition["reason"]) == ("False", "TLSNotUsedByGateway")
    prove_serving(lab.ingress, tls, logged)
    assert providers(lab.traefik) == {"kubernetesgateway"}


@pytest.fixture(scope="module")
def traefik_v2(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traefik]:
    """Traefik v2.11 on the lab's address, ports 8080 and 8443, reading the lab's cluster."""
    web, websecure = LEGACY_PORTS
    traefik = Traefik(
        find_lab_binaries() / "traefik-v2",
        lab.cluster.kubeconfig,
        tmp_path_factory.mktemp("traefik-v2"),
        lab.slot.host_ip,
        web_port=web,
        websecure_port=websecure,
        legacy=True,
    )
    traefik.start(print)
    yield traefik
    traefik.stop()


def test_the_gateways_refusal_reaches_ready_and_clears(
    lab: Lab, switchboard: Switchboard, namespaces: tuple[str, str], tls: tuple[str, str, Path]
) -> None:
    """Listeners that allow routes only from the Gateway's own namespace: Traefik's
    `Accepted=False` reason is the TrackingServer's `Ready=False` reason, until allowed again."""
    namespace, gateway_namespace = namespaces
    cert, key, _ = tls
    _, gateway = gateway_manifests(gateway_namespace, cert, key, routes_from="Same")
    serving.apply(lab.cluster, gateway_namespace, gateway)
    serving.until(
        "Ready=False, NotAllowedByListeners",
        lambda: ready_reason(lab.cluster, namespace) == ("False", "NotAllowedByListeners"),
        timeout=60,
    )
    _, gateway = gateway_manifests(gateway_namespace, cert, key)
    serving.apply(lab.cluster, gateway_namespace, gateway)
    until_ready(lab.cluster, namespace)


def test_traefik_containo_us_through_traefik_v2(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
    traefik_v2: Traefik,
) -> None:
    """The legacy group, forced while the cluster also serves traefik.io: Traefik v2 serves it,
    the lab's v3 (which no longer reads it) does not."""
    namespace = namespaces[0]
    assert traefik_v2.version.startswith("v2.11")
    switchboard.use(IngressController.TRAEFIK, traefik_groups=("traefik.containo.us",))
    until_only(lab.cluster, namespace, LEGACY_INGRESS_ROUTE)
    until_ready(lab.cluster, namespace)
    prove_serving(traefik_v2.endpoint, tls, logged)
    assert providers(traefik_v2) == {"kubernetescrd"}
    assert not providers(lab.traefik)
    assert not serving.serves_mlflow(lab.ingress, HOST, f"{PREFIX}/")


def test_back_to_auto_removes_the_legacy_route_and_traefik_io_serves(
    lab: Lab,
    switchboard: Switchboard,
    namespaces: tuple[str, str],
    tls: tuple[str, str, Path],
    logged: dict[str, str],
) -> None:
    namespace = namespaces[0]
    switchboard.use(IngressController.AUTO)
    until_only(lab.cluster, namespace, INGRESS_ROUTE)
    prove_serving(lab.ingress, tls, logged)
    assert providers(lab.traefik) == {"kubernetescrd"}
