"""Traefik as a host process reading the lab's API server, like the in-cluster controller would.

Entry points: `web` and `websecure` (TLS by default, as the Helm chart does) on `address`, the
two names the operator's IngressRoutes list; routers that name none (Ingresses, HTTPRoutes)
get these two only. `traefik` on a loopback port serves ping and the API (`/api/http/routers`
shows what Traefik made of the cluster). `demo` (with `extra_web`) is a raw TCP forward to
`web`: an entry point cannot share another's routers, and the operator names `web`, so the
forward is what makes every web route answer on a second address too.

`legacy` runs Traefik v2 (`traefik-v2`), the last line reading `traefik.containo.us` (and
`traefik.io`), with the same entry points; v2 has no Gateway API provider worth using, no
Ingress-NGINX provider and no `asDefault` (its routers without entry points get all of them).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from experiment_lab.hostprocess import Component, free_port
from experiment_lab.ingress import IngressEndpoint

__all__ = ["IngressEndpoint", "Traefik", "class_manifests", "dynamic_config", "static_config"]

log = logging.getLogger(__name__)

INGRESS_CONTROLLER = "traefik.io/ingress-controller"
NGINX_CONTROLLER = "k8s.io/ingress-nginx"
GATEWAY_CONTROLLER = "traefik.io/gateway-controller"
DEMO = "demo"


def static_config(
    *,
    address: str,
    web_port: int,
    websecure_port: int,
    api_port: int,
    workdir: Path,
    extra_web: str | None = None,
    legacy: bool = False,
) -> dict[str, Any]:
    """Traefik's static configuration (written as YAML, passed with `--configFile`)."""
    entry_points: dict[str, Any] = {
        "web": {"address": f"{address}:{web_port}"},
        "websecure": {"address": f"{address}:{websecure_port}", "http": {"tls": {}}},
        "traefik": {"address": f"127.0.0.1:{api_port}"},
    }
    if not legacy:
        entry_points["web"]["asDefault"] = True
        entry_points["websecure"]["asDefault"] = True
    providers: dict[str, Any] = {
        "kubernetesCRD": {"allowCrossNamespace": False, "allowEmptyServices": True},
        "kubernetesIngress": {"allowEmptyServices": True, "ingressEndpoint": {"ip": address}},
    }
    if not legacy:
        providers["kubernetesGateway"] = {
            "experimentalChannel": False,
            "statusAddress": {"ip": address},
        }
        providers["kubernetesIngressNGINX"] = {"publishStatusAddress": [address]}
    if extra_web:
        entry_points[DEMO] = {"address": extra_web}
        providers["file"] = {"filename": str(workdir / "dynamic.yaml"), "watch": False}
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": entry_points,
        "providers": providers,
        "api": {"insecure": True, "dashboard": False},
        "ping": {"entryPoint": "traefik"},
        "log": {"level": "INFO", "filePath": str(workdir / "traefik.log")},
        "accessLog": {"filePath": str(workdir / "access.log")},
    }


def dynamic_config(address: str, web_port: int) -> dict[str, Any]:
    """The `demo` entry point's catch-all TCP route to `web` (the file provider's config)."""
    return {
        "tcp": {
            "routers": {
                DEMO: {"entryPoints": [DEMO], "rule": "HostSNI(`*`)", "service": DEMO},
            },
            "services": {
                DEMO: {"loadBalancer": {"servers": [{"address": f"{address}:{web_port}"}]}}
            },
        }
    }


def class_manifests() -> list[dict[str, Any]]:
    """Cluster-scoped classes the providers look for: IngressClasses `traefik` and `nginx`
    (what the operator's nginx Ingresses name, served by the Ingress-NGINX provider) and the
    GatewayClass `traefik`."""

    def ingress_class(name: str, controller: str) -> dict[str, Any]:
        return {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IngressClass",
            "metadata": {"name": name},
            "spec": {"controller": controller},
        }

    return [
        ingress_class("traefik", INGRESS_CONTROLLER),
        ingress_class("nginx", NGINX_CONTROLLER),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": "traefik"},
            "spec": {"controllerName": GATEWAY_CONTROLLER},
        },
    ]


@dataclass
class Traefik:
    """A Traefik process on `address` (the node tier's host address: standard ports, no
    collision between labs), reading the cluster of `kubeconfig`; files under `workdir`."""

    binary: Path
    kubeconfig: Path
    workdir: Path
    address: str
    web_port: int = 80
    websecure_port: int = 443
    extra_web: str | None = None
    """An additional "host:port" answering as `web` does (the demo's http://127.0.0.1:8080)."""
    legacy: bool = False
    """Run Traefik v2 (`binary` must be traefik-v2), which reads `traefik.containo.us`."""
    api_port: int = 0
    """Loopback port of ping and the API (0: a free one)."""
    _process: Component | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> IngressEndpoint:
        return IngressEndpoint(self.address, self.web_port, self.websecure_port)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @cached_property
    def version(self) -> str:
        """What `traefik version` reports, e.g. "v3.6.12"."""
        out = subprocess.run(
            [str(self.binary), "version"], capture_output=True, text=True, check=True
        ).stdout
        for line in out.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "Version":
                return value.strip()
        raise RuntimeError(f"{self.binary} version printed no version:\n{out}")

    def start(self, progress: Callable[[str], None] = log.info) -> None:
        """Write the configuration, start Traefik and wait until it answers ping."""
        self.workdir = self.workdir.resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.api_port:
            self.api_port = free_port("127.0.0.1")
        config = static_config(
            address=self.address,
            web_port=self.web_port,
            websecure_port=self.websecure_port,
            api_port=self.api_port,
            workdir=self.workdir,
            extra_web=self.extra_web,
            legacy=self.legacy,
        )
        if self.extra_web:
            dynamic = dynamic_config(self.address, self.web_port)
            (self.workdir / "dynamic.yaml").write_text(yaml.safe_dump(dynamic))
        config_file = self.workdir / "traefik.yaml"
        config_file.write_text(yaml.safe_dump(config))
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        argv = [str(self.binary), f"--configFile={config_file}"]
        # Traefik logs to traefik.log; this file catches what it prints before reading that.
        self._process = Component("traefik", argv, self.workdir / "traefik.out", env=env)
        self._process.start()
        try:
            self._process.wait_healthy(self._pinged)
        except BaseException:
            self.stop()
            raise
        demo = f", demo {self.extra_web}" if self.extra_web else ""
        ports = f"web {self.web_port}, websecure {self.websecure_port}{demo}"
        progress(f"Traefik {self.version} serving {self.address} ({ports})")

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None

    def routers(self) -> list[dict[str, Any]]:
        """The HTTP routers Traefik made (from its API): what to look at when a route is
        missing."""
        with urllib.request.urlopen(f"{self.api_url}/api/http/routers", timeout=5) as resp:
            result: list[dict[str, Any]] = json.loads(resp.read())
            return result

    def _pinged(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.api_url}/ping", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError:
            return False
