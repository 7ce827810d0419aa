"""The built children pass the real API server's validation, Traefik's upstream CRDs included;
those created with a POST need no second write."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lightkube import AsyncClient
from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.core_v1 import Secret

from experiment_lab.cluster import Kubectl
from experiment_operator.api.trackingserver import TrackingServer
from experiment_operator.runtime import kubeapi
from experiment_operator.runtime.apply import (
    FIELD_MANAGER,
    NotOwnedError,
    applied_state,
    apply_owned,
    controller_reference,
    with_controller_reference,
)
from experiment_operator.runtime.cache import cache_transform
from experiment_operator.runtime.fieldset import desired_digest
from experiment_operator.runtime.kubeapi import KindInfo
from experiment_operator.trackingserver.children import (
    ChildOptions,
    IngressController,
    build_children,
)
from experiment_operator.trackingserver.resources import POSTED_KINDS, kind_of
from experiment_operator.trackingserver.workload import deployment

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OPTIONS = {
    "traefik.io": ChildOptions(),
    "traefik.containo.us": ChildOptions(traefik_group="traefik.containo.us"),
    "nginx": ChildOptions(ingress_controller=IngressController.NGINX),
}
SPECS: dict[str, dict[str, Any]] = {
    "blog": {},
    "repo": {},
    "no-path-no-tls": {"url": "http://mlflow.example.com", "cert": "", "key": ""},
}


def sample(name: str, namespace: str, spec: dict[str, Any]) -> TrackingServer:
    file = FIXTURES / f"seed-{'repo' if name == 'repo' else 'blog'}-sample.yaml"
    obj: dict[str, Any] = yaml.safe_load(file.read_text())
    obj["metadata"].update(namespace=namespace, uid="fff12ab5-3043-4724-805a-9b5733afb98f")
    obj["spec"].update(spec)
    return TrackingServer.from_api(obj)


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("spec", list(SPECS))
def test_children_pass_server_side_dry_run(
    kubectl: Kubectl, namespace: str, option: str, spec: str
) -> None:
    ts = sample(spec, namespace, SPECS[spec])
    children = build_children(ts, OPTIONS[option], tls_secret_present=ts.spec.tls_enabled)
    manifest = yaml.safe_dump_all(children)
    result = kubectl(
        *("apply", "--server-side", "--dry-run=server", "--field-manager=test", "-f", "-"),
        input=manifest,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("serverside-applied") == len(children), result.stdout


def test_strategy_switch_applies_in_place(kubectl: Kubectl, namespace: str) -> None:
    """Owning the rollingUpdate defaults lets server-side apply drop them for Recreate."""
    without_volume = sample("repo", namespace, {"storageClassName": ""})
    with_volume = sample("repo", namespace, {})
    for ts in (without_volume, with_volume, without_volume):
        [dep] = [
            c
            for c in build_children(ts, OPTIONS["nginx"], tls_secret_present=False)
            if c["kind"] == "Deployment"
        ]
        del dep["metadata"]["ownerReferences"]  # the fake owner would be garbage-collected
        result = kubectl(
            *("apply", "--server-side", "--field-manager=test", "-f", "-"),
            input=yaml.safe_dump(dep),
            check=False,
        )
        assert result.returncode == 0, result.stderr
        stored = yaml.safe_load(
            kubectl("get", "deployment", "trackingserver", "-n", namespace, "-o", "yaml").stdout
        )
        assert stored["spec"]["strategy"]["type"] == dep["spec"]["strategy"]["type"]


async def test_takeover_of_a_seed_deployment_switches_to_recreate(
    kube: AsyncClient, namespace: str
) -> None:
    """The seed created Deployments with plain create calls: the defaulted RollingUpdate block
    and the plaintext credentials belong to its field manager. Taking over transfers them to us,
    so the apply switches to Recreate and secretKeyRef in place instead of failing with 422."""
    owner = await kubeapi.request(
        kube,
        "POST",
        f"api/v1/namespaces/{namespace}/configmaps",
        body={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
    )
    ts = sample("repo", namespace, {})
    ts.metadata.uid = owner["metadata"]["uid"]
    desired = deployment(ts, ChildOptions().plan(ts))
    del desired["metadata"]["ownerReferences"]  # apply_owned adds the owner's reference
    seed_made = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "trackingserver", "ownerReferences": [controller_reference(owner)]},
        "spec": {
            "replicas": 2,
            "selector": desired["spec"]["selector"],
            "template": {
                "metadata": {"labels": desired["spec"]["selector"]["matchLabels"]},
                "spec": {
                    "containers": [
                        {
                            "name": "mlflow",
                            "image": "mlflow:aiscope",
                            "env": [{"name": "AWS_ACCESS_KEY_ID", "value": "mlflow"}],
                        }
                    ]
                },
            },
        },
    }
    info = KindInfo.of(Deployment)
    created = await kubeapi.request(
        kube,
        "POST",
        info.path(namespace),
        params={"fieldManager": "controller-manager.exe"},
        body=seed_made,
    )
    applied = await apply_owned(kube, desired, owner)
    assert applied["metadata"]["uid"] == created["metadata"]["uid"]
    assert applied["spec"]["strategy"] == {"type": "Recreate"}
    [env] = [e for e in applied["spec"]["template"]["spec"]["containers"][0]["env"]
             if e["name"] == "AWS_ACCESS_KEY_ID"]  # fmt: skip
    assert "value" not in env
    assert env["valueFrom"]["secretKeyRef"]["name"] == "trackingserver-s3-credentials"


async def _owner(kube: AsyncClient, namespace: str) -> kubeapi.Obj:
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}
    return await kubeapi.request(
        kube, "POST", f"api/v1/namespaces/{namespace}/configmaps", body=body
    )


def _posted(ts: TrackingServer, option: str) -> list[kubeapi.Obj]:
    children = build_children(ts, OPTIONS[option], tls_secret_present=ts.spec.tls_enabled)
    posted = [c for c in children if kind_of(c["apiVersion"], c["kind"]) in POSTED_KINDS]
    for child in posted:
        del child["metadata"]["ownerReferences"]  # apply_owned adds the owner's reference
    return posted


@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("spec", list(SPECS))
async def test_posted_children_need_no_write_after_their_create(
    kube: AsyncClient, namespace: str, option: str, spec: str
) -> None:
    """A POST leaves our Update entry; for the POSTED_KINDS its field set is the body's (the
    server added no defaults), so the cached copy's digest equals the body's: no second write."""
    owner = await _owner(kube, namespace)
    posted = _posted(sample(spec, namespace, SPECS[spec]), option)
    assert {c["kind"] for c in posted} >= {"Secret"}
    for child in posted:
        created = await apply_owned(kube, child, owner, post_create=True)
        [entry] = created["metadata"]["managedFields"]
        assert (entry["manager"], entry["operation"]) == (FIELD_MANAGER, "Update")
        body = with_controller_reference({**child}, owner)
        body["metadata"]["namespace"] = namespace
        assert applied_state(created) == (desired_digest(body), True), child["kind"]
        cached = cache_transform(())(created)
        assert await apply_owned(kube, child, owner, live=cached, post_create=True) is cached


async def test_a_posted_child_is_taken_over_before_its_first_change(
    kube: AsyncClient, namespace: str
) -> None:
    """The change is an apply, after our Update entry's fields moved into our Apply entry: a key
    no longer desired is removed, and the next pass writes nothing."""
    owner = await _owner(kube, namespace)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "posted", "labels": {"app": "t"}},
        "type": "Opaque",
        "data": {"a": "YQ==", "b": "Yg=="},
    }
    created = await apply_owned(kube, secret, owner, post_create=True)
    fewer = {**secret, "data": {"a": "YQ=="}}
    changed = await apply_owned(
        kube, fewer, owner, live=cache_transform(())(created), post_create=True
    )
    assert changed["data"] == {"a": "YQ=="}
    managers = [(e["manager"], e["operation"]) for e in changed["metadata"]["managedFields"]]
    assert managers == [(FIELD_MANAGER, "Apply")]
    cached = cache_transform(())(changed)
    assert await apply_owned(kube, fewer, owner, live=cached, post_create=True) is cached


async def test_a_post_never_touches_a_foreign_object(kube: AsyncClient, namespace: str) -> None:
    owner = await _owner(kube, namespace)
    foreign = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "taken"},
               "data": {"mine": "eA=="}}  # fmt: skip
    before = await kubeapi.request(kube, "POST", f"api/v1/namespaces/{namespace}/secrets",
                                   body=foreign)  # fmt: skip
    ours = {**foreign, "data": {"theirs": "eQ=="}}
    with pytest.raises(NotOwnedError):
        await apply_owned(kube, ours, owner, post_create=True)
    after = await kubeapi.get(kube, KindInfo.of(Secret), namespace, "taken")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
