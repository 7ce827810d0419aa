"""The node's configuration files, as pure functions of its slot and paths (unit-tested)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiment_lab.images import PAUSE_IMAGE
from experiment_lab.node.slot import CLUSTER_DNS, NODE_NAME, Slot

CNI_BIN_DIR = "/usr/lib/cni"
"""Where Debian's containernetworking-plugins installs bridge, host-local, portmap, loopback."""


@dataclass(frozen=True)
class NodePaths:
    """Where the node keeps its state: all under the slot's runtime directory."""

    root: Path

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def volumes(self) -> Path:
        """Local PersistentVolumes' directories (see `experiment_lab.provisioner`)."""
        return self.root / "volumes"


def containerd_config(paths: NodePaths) -> str:
    """containerd 1.6 with its own root, state and sockets, and the CRI plugin for the kubelet.

    ``restrict_oom_score_adj``: root here lacks CAP_SYS_RESOURCE, so containers may not lower
    their OOM score below containerd's own.
    """
    root = paths.root / "containerd"
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{paths.containerd_socket}"

[ttrpc]
  address = "{paths.containerd_socket}.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root / "opt"}"

[{cri}]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
  [{cri}.cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{paths.cni_conf_dir}"
"""


def cni_conflist(slot: Slot, paths: NodePaths) -> dict[str, Any]:
    """A bridge for the Pods, routed (not masqueraded) to the host: the host reaches Pod IPs
    through its route via the node, and Pods reach the host's servers from their own IPs."""
    return {
        "cniVersion": "0.4.0",
        "name": "lab",
        "plugins": [
            {
                "type": "bridge",
                "bridge": slot.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": slot.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(paths.root / "cni" / "ipam"),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "lab", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": user}}],
        "current-context": "lab",
    }


def kubelet_config(slot: Slot, paths: NodePaths, ca: Path) -> dict[str, Any]:
    """The kubelet on this machine: cgroupfs under the slot's cgroup root, cgroup v1 allowed
    (deprecated in 1.35, and what this machine has), swap tolerated, eviction thresholds low
    enough that a busy shared machine does not evict the lab's Pods."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": slot.node_ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "tlsCertFile": str(paths.pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(paths.pki / "kubelet-serving.key"),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": slot.cgroup_root,
        "failCgroupV1": False,
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "clusterDNS": [CLUSTER_DNS],
        "clusterDomain": "cluster.local",
        "resolvConf": "",
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }


def kube_proxy_config(slot: Slot, kubeconfig_path: Path) -> dict[str, Any]:
    """iptables mode inside the node's network namespace. Conntrack limits are machine-wide
    (``nf_conntrack_max``): 0 leaves them alone. Every Service connection is masqueraded, so a
    Pod reaching a Service whose endpoint shares its bridge gets its reply through the node."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": slot.pod_cidr,
        "iptables": {"masqueradeAll": True},
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "metricsBindAddress": "127.0.0.1:10249",
        "healthzBindAddress": "127.0.0.1:10256",
    }


def corefile(slot: Slot, kubeconfig_path: Path) -> str:
    """Cluster DNS for Service and Pod names; nothing is forwarded (traffic stays local)."""
    return f""".:53 {{
    bind {slot.node_ip}
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig_path} lab
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def dns_objects(slot: Slot) -> list[dict[str, Any]]:
    """``kube-system/kube-dns`` at the cluster DNS address, its endpoint CoreDNS on the node."""
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    labels = {"k8s-app": "kube-dns", "app.kubernetes.io/managed-by": "experiment-lab"}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
        "spec": {
            "clusterIP": CLUSTER_DNS,
            "ports": [{"name": n, "protocol": p, "port": 53, "targetPort": 53} for n, p in ports],
        },
    }
    endpoints = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kube-dns-lab-node",
            "namespace": "kube-system",
            "labels": {**labels, "kubernetes.io/service-name": "kube-dns"},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [slot.node_ip], "conditions": {"ready": True}}],
        "ports": [{"name": n, "protocol": p, "port": 53} for n, p in ports],
    }
    return [service, endpoints]
