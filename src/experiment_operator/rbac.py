"""The operator's permissions, in one table, and the RBAC objects generated from it.

Every ClusterRole, Role and binding that ships (kustomize's `config/rbac`, the Helm chart, the
test helper that runs the operator as its ServiceAccount) comes from `OPERATOR_RULES` and
`LEADER_ELECTION_RULES`, so what the operator may do is reviewed in one place and a missing verb
fails the tests that run the operator under exactly these rules. No wildcards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from experiment_operator.api.trackingserver import GROUP, PLURAL

Obj = dict[str, Any]

READ = ("get", "list", "watch")
# Server-side apply is a PATCH; when the object does not exist yet it also needs `create`.
OWN = (*READ, "create", "patch", "delete")

TRAEFIK_GROUPS = ("traefik.io", "traefik.containo.us")
"""Traefik v3's group, and the legacy one the original controller used (either may be served)."""


@dataclass(frozen=True)
class Rule:
    """One RBAC policy rule, with the reason the operator needs it (for the docs)."""

    groups: tuple[str, ...]
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str

    def to_dict(self) -> Obj:
        return {
            "apiGroups": list(self.groups),
            "resources": list(self.resources),
            "verbs": list(self.verbs),
        }


OPERATOR_RULES: tuple[Rule, ...] = (
    Rule(("",), ("events",), ("create", "patch"), "Normal/Warning Events on TrackingServers; "
         "repeats patch the count of the existing Event"),
    Rule(("",), ("persistentvolumeclaims", "secrets", "services"), OWN,
         "owned children, applied server-side; cached by a label-selected watch (see "
         "docs/security.md for Secrets)"),
    Rule(("apps",), ("deployments",), OWN, "the MLflow server Deployment"),
    Rule(("",), ("pods",), READ, "the MLflow Pods (label-selected watch), read to explain a "
         "server that is not available: image pull errors, crashes, unschedulable, probes"),
    Rule((GROUP,), (PLURAL,), (*READ, "patch"), "the primary resource, cached by a watch; "
         "patch only edits metadata.finalizers (the volume-retention finalizer)"),
    Rule((GROUP,), (f"{PLURAL}/finalizers",), ("update",),
         "children carry blockOwnerDeletion owner references, which clusters with the "
         "OwnerReferencesPermissionEnforcement admission plugin allow only with this"),
    Rule((GROUP,), (f"{PLURAL}/status",), ("patch",), "status is written as a merge patch"),
    Rule(("networking.k8s.io",), ("ingresses",), OWN, "routing with --ingress-controller=nginx"),
    *(
        Rule((group,), ("ingressroutes", "middlewares"), OWN,
             "routing with --ingress-controller=traefik (or auto)")
        for group in TRAEFIK_GROUPS
    ),
    Rule(("gateway.networking.k8s.io",), ("httproutes", "listenersets"), OWN,
         "routing with --ingress-controller=gateway: the HTTPRoute, and the ListenerSet of a "
         "TrackingServer with TLS; their status (the Gateway's verdict) is read from the watch"),
)  # fmt: skip
"""What the operator does in every namespace it watches (ClusterRole, or Role per namespace)."""

LEADER_ELECTION_RULES: tuple[Rule, ...] = (
    Rule(("coordination.k8s.io",), ("leases",), ("get", "create", "update"),
         "leader election on a Lease in the operator's own namespace"),
)  # fmt: skip
"""What the operator does in its own namespace only."""

_RBAC_API = "rbac.authorization.k8s.io/v1"


def _meta(name: str, namespace: str | None, labels: dict[str, str] | None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def rules(table: Sequence[Rule] = OPERATOR_RULES) -> list[Obj]:
    """The table as the `rules` list of a Role or ClusterRole."""
    return [rule.to_dict() for rule in table]


def cluster_role(name: str, *, labels: dict[str, str] | None = None) -> Obj:
    """The ClusterRole for watching all namespaces (the default)."""
    return {
        "apiVersion": _RBAC_API,
        "kind": "ClusterRole",
        "metadata": _meta(name, None, labels),
        "rules": rules(),
    }


def role(name: str, namespace: str, *, labels: dict[str, str] | None = None) -> Obj:
    """The same rules as a Role, one per watched namespace in `--namespace` mode."""
    return {
        "apiVersion": _RBAC_API,
        "kind": "Role",
        "metadata": _meta(name, namespace, labels),
        "rules": rules(),
    }


def leader_election_role(name: str, namespace: str, *, labels: dict[str, str] | None = None) -> Obj:
    """The Role for the Lease, in the operator's own namespace."""
    return {
        "apiVersion": _RBAC_API,
        "kind": "Role",
        "metadata": _meta(name, namespace, labels),
        "rules": rules(LEADER_ELECTION_RULES),
    }


def service_account(name: str, namespace: str, *, labels: dict[str, str] | None = None) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _meta(name, namespace, labels),
    }


def binding(
    name: str,
    *,
    role_kind: str,
    role_name: str,
    account: str,
    account_namespace: str,
    namespace: str | None = None,
    labels: dict[str, str] | None = None,
) -> Obj:
    """A RoleBinding (with `namespace`) or ClusterRoleBinding granting a role to the account."""
    return {
        "apiVersion": _RBAC_API,
        "kind": "RoleBinding" if namespace is not None else "ClusterRoleBinding",
        "metadata": _meta(name, namespace, labels),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": account_namespace}],
    }


LEADER_ELECTION_FLOW_PRECEDENCE = 200
"""Like Kubernetes' own `workload-leader-election` FlowSchema: ahead of every schema that
classifies ordinary ServiceAccount traffic (9000 and up) and of typical limits an administrator
sets on a busy operator, so throttling its reconciles never starves its Lease renewals."""


def leader_election_flow_schema(
    name: str, namespace: str, account: str, *, labels: dict[str, str] | None = None
) -> Obj:
    """API Priority and Fairness: the operator's Lease requests go to the built-in
    `leader-election` priority level. Without it they share the operator's own level, and a
    throttled operator (429s) cannot renew in time, loses leadership and restarts."""
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": _meta(name, None, labels),
        "spec": {
            "matchingPrecedence": LEADER_ELECTION_FLOW_PRECEDENCE,
            "priorityLevelConfiguration": {"name": "leader-election"},
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [
                {
                    "subjects": [
                        {
                            "kind": "ServiceAccount",
                            "serviceAccount": {"name": account, "namespace": namespace},
                        }
                    ],
                    "resourceRules": [
                        {
                            "verbs": list(LEADER_ELECTION_RULES[0].verbs),
                            "apiGroups": list(LEADER_ELECTION_RULES[0].groups),
                            "resources": list(LEADER_ELECTION_RULES[0].resources),
                            "namespaces": [namespace],
                        }
                    ],
                }
            ],
        },
    }


@dataclass(frozen=True)
class RbacNames:
    """Names of the RBAC objects of one installation (and of the Lease's FlowSchema)."""

    account: str
    role: str
    role_binding: str
    leader_election_role: str
    leader_election_binding: str
    leader_election_flow_schema: str

    @classmethod
    def with_prefix(cls, prefix: str) -> RbacNames:
        """kubebuilder's names after a prefix, e.g. `experiment-operator-manager-role`."""
        return cls(
            account=f"{prefix}controller-manager",
            role=f"{prefix}manager-role",
            role_binding=f"{prefix}manager-rolebinding",
            leader_election_role=f"{prefix}leader-election-role",
            leader_election_binding=f"{prefix}leader-election-rolebinding",
            leader_election_flow_schema=f"{prefix}leader-election",
        )


def operator_rbac(
    names: RbacNames,
    namespace: str,
    *,
    watch_namespaces: Sequence[str] = (),
    labels: dict[str, str] | None = None,
) -> list[Obj]:
    """ServiceAccount, role(s), bindings, the leader-election Role and its FlowSchema for one
    installation.

    With no `watch_namespaces` the rules are a ClusterRole bound cluster-wide (and the Lease's
    FlowSchema); otherwise a Role and RoleBinding in each watched namespace, and nothing
    cluster-scoped.
    """

    def bind(name: str, role_kind: str, role_name: str, where: str | None) -> Obj:
        return binding(
            name,
            role_kind=role_kind,
            role_name=role_name,
            account=names.account,
            account_namespace=namespace,
            namespace=where,
            labels=labels,
        )

    objects = [service_account(names.account, namespace, labels=labels)]
    if not watch_namespaces:
        objects.append(cluster_role(names.role, labels=labels))
        objects.append(bind(names.role_binding, "ClusterRole", names.role, None))
    for watched in watch_namespaces:
        objects.append(role(names.role, watched, labels=labels))
        objects.append(bind(names.role_binding, "Role", names.role, watched))
    objects.append(leader_election_role(names.leader_election_role, namespace, labels=labels))
    objects.append(
        bind(names.leader_election_binding, "Role", names.leader_election_role, namespace)
    )
    if not watch_namespaces:  # cluster-scoped, so only with the cluster-wide install
        objects.append(
            leader_election_flow_schema(
                names.leader_election_flow_schema, namespace, names.account, labels=labels
            )
        )
    return objects
