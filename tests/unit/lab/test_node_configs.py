"""The node's configuration files: what each setting protects on a shared machine."""

from __future__ import annotations

import ipaddress
import json
import tomllib
from pathlib import Path

import pytest
from lightkube.models.core_v1 import PersistentVolumeClaimSpec, VolumeResourceRequirements
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import PersistentVolumeClaim

from experiment_lab.node import configs
from experiment_lab.node.slot import CLUSTER_DNS, SLOTS, Slot
from experiment_lab.provisioner import volume_for

SLOT = Slot(3)
PATHS = configs.NodePaths(SLOT.runtime_dir)


def test_slots_never_share_addresses_names_or_directories() -> None:
    slots = [Slot(i) for i in range(SLOTS)]
    for attribute in ("host_ip", "node_ip", "pod_cidr", "link", "cgroup_root", "runtime_dir"):
        assert len({getattr(s, attribute) for s in slots}) == SLOTS, attribute
    networks = [ipaddress.ip_network(s.pod_cidr) for s in slots]
    networks += [ipaddress.ip_network(s.link_cidr) for s in slots]
    assert not any(a.overlaps(b) for i, a in enumerate(networks) for b in networks[i + 1 :])
    assert ipaddress.ip_address(CLUSTER_DNS) in ipaddress.ip_network("10.0.0.0/16")


def test_unix_sockets_fit_the_kernels_limit() -> None:
    longest = f"{PATHS.containerd_socket}.ttrpc"
    assert len(longest.encode()) < 108


def test_containerd_keeps_everything_under_the_slot() -> None:
    config = tomllib.loads(configs.containerd_config(PATHS))
    root = str(SLOT.runtime_dir)
    assert config["root"].startswith(root)
    assert config["state"].startswith(root)
    assert config["grpc"]["address"] == str(PATHS.containerd_socket)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["cni"]["conf_dir"].startswith(root)
    assert cri["sandbox_image"].startswith("localhost/")  # no registry


def test_the_pod_network_is_routed_not_masqueraded() -> None:
    conflist = configs.cni_conflist(SLOT, PATHS)
    bridge = conflist["plugins"][0]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": SLOT.pod_cidr}]]
    assert bridge["ipam"]["dataDir"].startswith(str(SLOT.runtime_dir))
    json.dumps(conflist)


def test_the_kubelet_changes_nothing_machine_wide() -> None:
    config = configs.kubelet_config(SLOT, PATHS, Path("/ca.crt"))
    assert config["cgroupDriver"] == "cgroupfs"
    assert config["cgroupRoot"] == SLOT.cgroup_root
    assert config["failSwapOn"] is False
    assert config["failCgroupV1"] is False
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert config["readOnlyPort"] == 0
    assert config["address"] == SLOT.node_ip
    assert config["clusterDNS"] == [CLUSTER_DNS]


def test_kube_proxy_leaves_machine_wide_conntrack_limits_alone() -> None:
    config = configs.kube_proxy_config(SLOT, Path("/kc"))
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["conntrack"]["min"] == 0
    assert config["clusterCIDR"] == SLOT.pod_cidr


def test_cluster_dns_forwards_nothing_and_listens_on_the_node() -> None:
    corefile = configs.corefile(SLOT, Path("/kc"))
    assert f"bind {SLOT.node_ip}" in corefile
    assert "forward" not in corefile
    service, endpoints = configs.dns_objects(SLOT)
    assert service["spec"]["clusterIP"] == CLUSTER_DNS
    assert endpoints["endpoints"][0]["addresses"] == [SLOT.node_ip]


@pytest.mark.parametrize("storage", ["1Gi", "250Mi"])
def test_a_volume_is_bound_to_its_claim_on_the_lab_node(storage: str) -> None:
    claim = PersistentVolumeClaim(
        metadata=ObjectMeta(name="data", namespace="team", uid="u-1"),
        spec=PersistentVolumeClaimSpec(
            accessModes=["ReadWriteOnce"],
            resources=VolumeResourceRequirements(requests={"storage": storage}),
        ),
    )
    volume = volume_for(claim, "lab-u-1", Path("/tmp/experiment-lab-3/volumes/lab-u-1"))
    spec = volume["spec"]
    assert spec["capacity"] == {"storage": storage}
    assert spec["claimRef"]["uid"] == "u-1"
    assert spec["claimRef"]["namespace"] == "team"
    assert spec["local"]["path"].endswith("lab-u-1")
    term = spec["nodeAffinity"]["required"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["values"] == ["lab-node"]
