"""Two tenants on one host, `https://tenants.lab.test/team-a` and `/team-b`, each an
operator-started MLflow in its own namespace, behind the real Traefik with one certificate.

The checks build on each other and run in file order (two MLflow Pods for the whole module):
both serve under their prefix, a prefix without its slash redirects, each tenant's MLflow client
sees only its own experiment, and each tenant's UI in Chromium runs its scripts, lists its
experiment, shows nothing of the other tenant and fetches nothing outside its prefix. The
screenshots are kept in `.local/screenshots/tenants/` (the path is printed).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from experiment_lab import serving
from experiment_lab.binaries import REPO_ROOT
from experiment_lab.browser import chromium, spki_hash
from experiment_lab.mlflowclient import mlflow_client
from experiment_lab.objects import tls_pair
from experiment_lab.tier import NodeTier

HOST = "tenants.lab.test"
TENANTS = ("team-a", "team-b")
NAME = "mlflow"  # the same name in both namespaces
SCREENSHOTS = REPO_ROOT / ".local" / "screenshots" / "tenants"
EXPERIMENTS = {tenant: f"{tenant}-only-{uuid.uuid4().hex[:6]}" for tenant in TENANTS}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, Path]:
    """One certificate for the host, shared by both tenants (as a host's certificate is)."""
    cert, key = tls_pair(HOST)
    ca_file = tmp_path_factory.mktemp("tenants") / "ca.crt"
    ca_file.write_text(cert)
    return cert, key, ca_file


@pytest.fixture(scope="module")
def tenants(
    node_tier: NodeTier, operator: None, certificate: tuple[str, str, Path]
) -> Iterator[dict[str, str]]:
    """A TrackingServer per tenant (SQLite in the Pod): tenant -> its namespace."""
    cluster = node_tier.cluster
    cert, key, _ = certificate
    suffix = uuid.uuid4().hex[:6]
    namespaces = {tenant: f"{tenant}-{suffix}" for tenant in TENANTS}
    for tenant, namespace in namespaces.items():
        cluster.kubectl("create", "namespace", namespace)
        manifest = {
            "apiVersion": "experiment.aiscope/v1alpha2",
            "kind": "TrackingServer",
            "metadata": {"name": NAME},
            "spec": {
                "size": 1,
                "url": f"https://{HOST}/{tenant}",
                "backend_uri": "sqlite:////mlflow/mlflow.db",
                "artifact_root": f"s3://{tenant}/",
                "cert": cert,
                "key": key,
            },
        }
        serving.apply(cluster, namespace, manifest)
    yield namespaces
    for namespace in namespaces.values():
        cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_both_tenants_serve_under_their_prefix(
    node_tier: NodeTier, tenants: dict[str, str], certificate: tuple[str, str, Path]
) -> None:
    cluster, ca_file = node_tier.cluster, certificate[2]
    for tenant, namespace in tenants.items():

        def ready(ns: str = namespace) -> bool:
            return serving.ready_condition(cluster, ns, NAME).get("status") == "True"

        def serves(prefix: str = f"/{tenant}/") -> bool:
            return serving.serves_mlflow(node_tier.ingress, HOST, prefix, ca_file=ca_file)

        serving.until(f"{tenant} Ready=True", ready)
        serving.until(f"{tenant}'s UI through Traefik", serves, timeout=60)


def test_a_prefix_without_its_slash_redirects_to_the_ui(
    node_tier: NodeTier, tenants: dict[str, str], certificate: tuple[str, str, Path]
) -> None:
    for tenant in TENANTS:
        status, headers, _ = node_tier.ingress.get(
            HOST, f"/{tenant}", tls=True, ca_file=certificate[2]
        )
        assert 300 <= status < 400, (tenant, status)
        # Relative, or absolute on the same scheme and host: never down to plain http.
        assert headers["location"] in (f"/{tenant}/", f"https://{HOST}/{tenant}/"), headers


def test_each_client_sees_only_its_own_experiment(
    node_tier: NodeTier, tenants: dict[str, str], certificate: tuple[str, str, Path]
) -> None:
    ca_file = certificate[2]
    for tenant in TENANTS:
        with mlflow_client(node_tier.ingress, HOST, f"/{tenant}", ca_file=ca_file) as client:
            client.create_experiment(EXPERIMENTS[tenant])
    for tenant in TENANTS:
        with mlflow_client(node_tier.ingress, HOST, f"/{tenant}", ca_file=ca_file) as client:
            names = {e.name for e in client.search_experiments()}
        others = {EXPERIMENTS[t] for t in TENANTS if t != tenant}
        assert EXPERIMENTS[tenant] in names
        assert not names & others, (tenant, names)
        # The REST API and the UI's own API path, read raw through Traefik.
        for api in ("api", "ajax-api"):
            path = f"/{tenant}/{api}/2.0/mlflow/experiments/search?max_results=1000"
            status, _, body = node_tier.ingress.get(HOST, path, tls=True, ca_file=ca_file)
            assert status == 200, (path, status, body[:200])
            listed = {e["name"] for e in json.loads(body).get("experiments", [])}
            assert EXPERIMENTS[tenant] in listed, (path, listed)
            assert not listed & others, (path, listed)


def test_each_tenants_ui_lists_its_experiment_and_nothing_of_the_other(
    node_tier: NodeTier, tenants: dict[str, str], certificate: tuple[str, str, Path]
) -> None:
    """Chromium opens `/<tenant>` (no slash, as a user types it) and the experiments page."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {SCREENSHOTS}")
    rules = f"MAP {HOST} {node_tier.ingress.address}"
    with chromium(rules, ignore_cert_spki=[spki_hash(certificate[0].encode())]) as browser:
        for tenant in TENANTS:
            check_tenant_ui(browser, tenant)
    assert {p.name for p in SCREENSHOTS.glob("*.png")} >= {
        f"{t}-{view}.png" for t in TENANTS for view in ("home", "experiments")
    }


def check_tenant_ui(browser: Browser, tenant: str) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"https://{HOST}/{tenant}", timeout=60_000)
    assert page.url.startswith(f"https://{HOST}/{tenant}/"), page.url
    page.get_by_text("Experiments").first.wait_for(timeout=60_000)  # its scripts ran
    page.wait_for_timeout(2_000)
    page.screenshot(path=SCREENSHOTS / f"{tenant}-home.png", full_page=True)
    page.goto(f"https://{HOST}/{tenant}/#/experiments", timeout=60_000)
    page.get_by_text(EXPERIMENTS[tenant]).first.wait_for(timeout=60_000)
    page.wait_for_timeout(2_000)  # let the table finish rendering (the UI keeps polling)
    page.screenshot(path=SCREENSHOTS / f"{tenant}-experiments.png", full_page=True)
    content = page.content()
    for other in TENANTS:
        if other != tenant:
            assert EXPERIMENTS[other] not in content, (tenant, other)
    own = f"https://{HOST}/{tenant}"  # the address typed, then everything under it
    outside = [
        u for u in requested
        if u.startswith(f"https://{HOST}/") and u != own and not u.startswith(f"{own}/")
    ]  # fmt: skip
    assert not outside, (tenant, outside)
    assert page.title().endswith("MLflow"), page.title()
    print(f"{tenant}: {len(requested)} requests, page errors: {errors or 'none'}")
    page.close()
