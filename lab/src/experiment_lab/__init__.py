"""A real local Kubernetes control plane for tests, the demo and benchmarks.

Like controller-runtime's envtest, but complete: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (so Pods of Deployments become Ready), all built from their Go modules
by ``hack/controlplane/build.sh``. With ``USE_EXISTING_CLUSTER=true`` nothing is started and the
cluster of the current ``KUBECONFIG`` is used instead.
"""

from experiment_lab.binaries import find_binaries
from experiment_lab.controlplane import ControlPlane, ControlPlaneError

__all__ = ["ControlPlane", "ControlPlaneError", "find_binaries"]
