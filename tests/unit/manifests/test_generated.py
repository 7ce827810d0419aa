"""Generated files are current, and the RBAC generated from the table stays least-privilege."""

from __future__ import annotations

from importlib.metadata import version

import yaml

from experiment_lab.binaries import REPO_ROOT
from experiment_operator import rbac
from experiment_operator.manifests import generated_files, install, render_install, stale_files


def test_committed_generated_files_are_current() -> None:
    stale = stale_files(REPO_ROOT)
    assert not stale, f"stale generated files, run `make manifests`: {stale}"


def test_no_wildcards_anywhere() -> None:
    for rule in (*rbac.OPERATOR_RULES, *rbac.LEADER_ELECTION_RULES):
        for value in (*rule.groups, *rule.resources, *rule.verbs):
            assert "*" not in value, rule


def test_verbs_are_the_ones_the_operator_uses() -> None:
    verbs = {v for rule in rbac.OPERATOR_RULES for v in rule.verbs}
    # No `update` on whole objects (server-side apply patches), no deletecollection, no escalation.
    assert verbs <= {"get", "list", "watch", "create", "patch", "delete", "update"}
    updates = [r.resources for r in rbac.OPERATOR_RULES if "update" in r.verbs]
    assert updates == [("trackingservers/finalizers",)]
    secrets = next(r for r in rbac.OPERATOR_RULES if "secrets" in r.resources)
    assert "list" in secrets.verbs  # the label-selected watch; see docs/security.md


def test_namespaced_mode_has_nothing_cluster_scoped() -> None:
    objects = rbac.operator_rbac(install.NAMES, "ops", watch_namespaces=["a", "b"])
    kinds = sorted((o["kind"], o["metadata"].get("namespace", "")) for o in objects)
    assert kinds == [
        ("Role", "a"),
        ("Role", "b"),
        ("Role", "ops"),
        ("RoleBinding", "a"),
        ("RoleBinding", "b"),
        ("RoleBinding", "ops"),
        ("ServiceAccount", "ops"),
    ]
    for obj in objects:
        for subject in obj.get("subjects", []):
            assert subject == {"kind": "ServiceAccount", "name": install.NAMES.account,
                               "namespace": "ops"}  # fmt: skip


def test_lease_permissions_only_in_own_namespace() -> None:
    objects = rbac.operator_rbac(install.NAMES, "ops")
    lease_roles = [
        o for o in objects if any("leases" in r["resources"] for r in o.get("rules", []))
    ]
    assert [(o["kind"], o["metadata"]["namespace"]) for o in lease_roles] == [("Role", "ops")]
    cluster_role = next(o for o in objects if o["kind"] == "ClusterRole")
    assert all("leases" not in r["resources"] for r in cluster_role["rules"])


def test_install_matches_the_generated_config_files() -> None:
    files = generated_files(REPO_ROOT)
    text = render_install()
    for path, content in files.items():
        if path.parts[0] == "config" and path.suffix == ".yaml":
            for document in content.split("---\n")[1:]:
                assert document in text, f"{path} is not part of render_install()"


def test_restricted_pod_security_settings() -> None:
    pod = install.deployment()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert isinstance(pod["securityContext"]["runAsUser"], int)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_chart_and_image_versions_follow_the_package() -> None:
    chart = yaml.safe_load((REPO_ROOT / "charts/experiment-operator/Chart.yaml").read_text())
    assert chart["appVersion"] == version("experiment-operator")
    assert install.image() == f"experiment-operator:{chart['appVersion']}"
