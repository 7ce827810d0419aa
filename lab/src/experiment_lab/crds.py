"""Third-party CRDs taken away and given back during a test: a cluster that does not serve a
routing API yet, and installs it while the operator runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import yaml

from experiment_lab.cluster import Kubectl, third_party_crds_dir

HTTPROUTES = "httproutes.gateway.networking.k8s.io"
LISTENERSETS = "listenersets.gateway.networking.k8s.io"
TRAEFIK_ROUTING = (
    "ingressroutes.traefik.io",
    "middlewares.traefik.io",
    "ingressroutes.traefik.containo.us",
    "middlewares.traefik.containo.us",
)


class Restore(Protocol):
    def __call__(self, *names: str) -> None: ...


def upstream_crds() -> dict[str, dict[str, Any]]:
    """Every CRD of the third-party bundles by name; later bundles win (Gateway API v1.6.1
    over v1.4.0, as `Cluster.install_third_party_crds` applies them)."""
    crds: dict[str, dict[str, Any]] = {}
    for path in sorted(third_party_crds_dir().glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                crds[doc["metadata"]["name"]] = doc
    return crds


@contextmanager
def crds_removed(kubectl: Kubectl, *names: str) -> Iterator[Restore]:
    """Delete these CRDs (and so every object of them) and yield `restore(*names)`, which
    installs them again from the upstream bundles and waits until they are established (all
    of them without arguments). Whatever is still missing is restored on exit."""
    crds = upstream_crds()
    missing = set(names)
    kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=true", "--timeout=120s")

    def restore(*which: str) -> None:
        chosen = [n for n in (which or names) if n in missing]
        if not chosen:
            return
        text = yaml.safe_dump_all([crds[n] for n in chosen])
        kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text)
        kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *(f"crd/{n}" for n in chosen)
        )
        missing.difference_update(chosen)

    try:
        yield restore
    finally:
        restore()
