"""A real Kubernetes node for the lab: kubelet, containerd, runc, CNI, kube-proxy and CoreDNS in
their own PID, mount and network namespaces, so everything they make dies with the lab."""
