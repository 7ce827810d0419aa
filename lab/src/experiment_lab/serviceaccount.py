"""Run the operator in tests as its ServiceAccount, not as cluster admin.

`operator_account` installs a ServiceAccount with exactly the generated RBAC (`rbac.py`) and
writes a kubeconfig that authenticates with a TokenRequest token for it, so a permission the
operator lacks fails the test that needs it, as it would in a real cluster.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from lightkube import ApiError, AsyncClient, codecs
from lightkube.models.authentication_v1 import TokenRequestSpec
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import ServiceAccount, ServiceAccountToken
from lightkube.resources.flowcontrol_apiserver_v1 import FlowSchema
from lightkube.resources.rbac_authorization_v1 import (
    ClusterRole,
    ClusterRoleBinding,
    Role,
    RoleBinding,
)

from experiment_lab import credentials
from experiment_operator import rbac

FIELD_MANAGER = "envtest"


@dataclass(frozen=True)
class OperatorAccount:
    """What a test needs to run the operator as its ServiceAccount."""

    kubeconfig: Path
    namespace: str
    """The operator's own namespace (its ServiceAccount and leader-election Lease live here)."""
    name: str

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def cluster_entry(admin_kubeconfig: Path) -> dict[str, Any]:
    """The current context's `cluster` entry, with file paths made absolute."""
    config = yaml.safe_load(admin_kubeconfig.read_text())
    contexts = {c["name"]: c["context"] for c in config["contexts"]}
    cluster_name = contexts[config["current-context"]]["cluster"]
    entry = dict(next(c["cluster"] for c in config["clusters"] if c["name"] == cluster_name))
    if "certificate-authority" in entry:
        path = Path(entry["certificate-authority"])
        entry["certificate-authority"] = str(admin_kubeconfig.parent / path)
    return entry


def token_kubeconfig(cluster: dict[str, Any], user: str, token: str) -> str:
    """A kubeconfig that authenticates to `cluster` with a bearer token."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "envtest", "cluster": cluster}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": user, "context": {"cluster": "envtest", "user": user}}],
            "current-context": user,
        },
        sort_keys=False,
    )


@asynccontextmanager
async def operator_account(
    client: AsyncClient,
    admin_kubeconfig: Path,
    namespace: str,
    workdir: Path,
    *,
    watch_namespaces: Sequence[str] = (),
    token_seconds: int = 3600,
) -> AsyncIterator[OperatorAccount]:
    """Install the operator's ServiceAccount and RBAC in `namespace` and yield a kubeconfig
    for it; the RBAC objects are deleted afterwards.

    Cluster-scoped names carry a random suffix, so tests may run this side by side.
    """
    suffix = uuid.uuid4().hex[:6]
    names = rbac.RbacNames(
        account="experiment-operator",
        role=f"experiment-operator-{suffix}",
        role_binding=f"experiment-operator-{suffix}",
        leader_election_role="experiment-operator-leader-election",
        leader_election_binding="experiment-operator-leader-election",
        leader_election_flow_schema=f"experiment-operator-leader-election-{suffix}",
    )
    generated = rbac.operator_rbac(names, namespace, watch_namespaces=watch_namespaces)
    try:
        for obj in generated:
            await client.apply(codecs.from_dict(obj), field_manager=FIELD_MANAGER, force=True)
        token = await client.create(
            ServiceAccountToken(
                metadata=ObjectMeta(name=names.account, namespace=namespace),
                spec=TokenRequestSpec(audiences=[], expirationSeconds=token_seconds),
            ),
            names.account,
            namespace=namespace,
        )
        assert token.status is not None
        credentials.register(token.status.token, "the operator's ServiceAccount token")
        account = OperatorAccount(
            workdir / f"{namespace}-{suffix}.kubeconfig", namespace, names.account
        )
        account.kubeconfig.write_text(
            token_kubeconfig(cluster_entry(admin_kubeconfig), account.username, token.status.token)
        )
        account.kubeconfig.chmod(0o600)
        yield account
    finally:
        for obj in reversed(generated):
            await _delete(
                client, obj["kind"], obj["metadata"]["name"], obj["metadata"].get("namespace")
            )


async def _delete(client: AsyncClient, kind: str, name: str, namespace: str | None) -> None:
    with suppress(ApiError):
        if kind == "FlowSchema":
            await client.delete(FlowSchema, name)
        elif kind == "ClusterRole":
            await client.delete(ClusterRole, name)
        elif kind == "ClusterRoleBinding":
            await client.delete(ClusterRoleBinding, name)
        elif kind == "Role":
            await client.delete(Role, name, namespace=namespace)
        elif kind == "RoleBinding":
            await client.delete(RoleBinding, name, namespace=namespace)
        else:
            await client.delete(ServiceAccount, name, namespace=namespace)
