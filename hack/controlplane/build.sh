#!/usr/bin/env bash
# Build the local control plane (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl,
# etcd, kwok) and helm from their Go modules into a cache outside the repository, once.
#
# Usage: hack/controlplane/build.sh            -> prints the directory holding the binaries
# If KUBEBUILDER_ASSETS names a directory that already holds them, nothing is built (envtest's
# convention). Progress goes to stderr; only the directory goes to stdout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
k8s_version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$here/kubernetes/go.mod")
binaries=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm)

has_all() {
  local dir=$1 b
  for b in "${binaries[@]}"; do [[ -x "$dir/$b" ]] || return 1; done
}

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if has_all "$KUBEBUILDER_ASSETS"; then echo "$KUBEBUILDER_ASSETS"; exit 0; fi
  echo "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: ${binaries[*]}" >&2
  exit 1
fi

# Each module builds into a directory keyed by its own go.mod, so changing one pin rebuilds only
# that module's binaries; a directory of symlinks, keyed by all pins, gathers them.
cache="${XDG_CACHE_HOME:-$HOME/.cache}/experiment-operator/controlplane"
module_dir() { echo "$cache/modules/$1-$(sha256sum < "$here/$1/go.mod" | cut -c1-10)"; }
key=$(cat "$here"/*/go.mod | sha256sum | cut -c1-10)
out="$cache/${k8s_version}-${key}"
mkdir -p "$out"

log() { printf '[controlplane] %s\n' "$*" >&2; }

build() { # build <module dir> <output> <go build args...>
  local mod=$1 name=$2; shift 2
  local dir; dir=$(module_dir "$mod")
  if [[ ! -x "$dir/$name" ]]; then
    mkdir -p "$dir"
    log "building $name (cold builds take minutes on 2 cores; progress below)"
    local start=$SECONDS
    (cd "$here/$mod" && CGO_ENABLED=0 go build -v -trimpath -o "$dir/$name.tmp" "$@" 2>&1 \
      | awk -v name="$name" '{n++; if (n % 200 == 0) {
          printf "[controlplane]   %s: %d packages compiled\n", name, n; fflush() }}' >&2)
    mv "$dir/$name.tmp" "$dir/$name"
    log "built $name in $((SECONDS - start))s"
  fi
  ln -sfn "$dir/$name" "$out/$name"
}

minor=${k8s_version#v1.}; minor=${minor%%.*}
version_flags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_flags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  version_flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build kubernetes "$cmd" -tags selinux,notest -ldflags "$version_flags" "k8s.io/kubernetes/cmd/$cmd"
done
build etcd etcd -ldflags "-s -w" go.etcd.io/etcd/server/v3
build kwok kwok -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok
# helm as its Makefile stamps it: its version, and the Kubernetes minor `helm template` assumes.
helm_version=$(awk '$1 == "require" && $2 == "helm.sh/helm/v3" {print $3}' "$here/helm/go.mod")
helm_k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$here/helm/go.mod")
helm_flags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
build helm helm -ldflags "$helm_flags" helm.sh/helm/v3/cmd/helm

has_all "$out"
echo "$out"
