"""Fake Nodes that kwok plays the kubelet for, so scheduled Pods become Running and Ready."""

from __future__ import annotations

from typing import Any

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"


def fake_node_manifest(index: int) -> dict[str, Any]:
    """A Node big enough for thousands of benchmark Pods."""
    name = f"kwok-node-{index}"
    capacity = {"cpu": "1000", "memory": "4Ti", "pods": "10000"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "status": {"capacity": capacity, "allocatable": capacity},
    }
