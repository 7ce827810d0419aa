#!/usr/bin/env bash
# Build the Go-built binaries of the tests, the demo and the lab from their wrapper modules
# (hack/controlplane/<module>/go.mod) with the plain go tool, into a cache outside the repository,
# once.
#
# Usage: hack/controlplane/build.sh [SET...]        (default: controlplane)
#   controlplane  kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok helm
#   lab           the node tier: kubelet kube-proxy versitygw coredns traefik traefik-v2
# Prints one directory per SET on stdout, in the order given; progress goes to stderr.
# If KUBEBUILDER_ASSETS names a directory that already holds the controlplane set, that directory
# is the set's answer and none of it is built (envtest's convention); it does not cover `lab`.
#
# While one module compiles (CPU-bound), the next ones' `go mod download` runs beside it
# (network-bound); compiles run one at a time, each using every core.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/experiment-operator/controlplane"

# set, module (a directory here), binary, package; modules build in the order they appear.
targets=(
  "controlplane kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
  "controlplane kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
  "controlplane kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"
  "controlplane kubernetes kubectl k8s.io/kubernetes/cmd/kubectl"
  "lab kubernetes kubelet k8s.io/kubernetes/cmd/kubelet"
  "lab kubernetes kube-proxy k8s.io/kubernetes/cmd/kube-proxy"
  "controlplane etcd etcd go.etcd.io/etcd/server/v3"
  "controlplane kwok kwok sigs.k8s.io/kwok/cmd/kwok"
  "controlplane helm helm helm.sh/helm/v3/cmd/helm"
  "lab versitygw versitygw github.com/versity/versitygw/cmd/versitygw"
  "lab coredns coredns github.com/coredns/coredns"
  "lab traefik traefik github.com/traefik/traefik/v3/cmd/traefik"
  "lab traefik-v2 traefik-v2 github.com/traefik/traefik/v2/cmd/traefik"
)

log() { printf '[controlplane] %s\n' "$*" >&2; }

usage() { sed -n '6,11s/^# \{0,1\}//p' "$0" >&2; exit 2; }

# The version a wrapper module requires of an upstream module.
required() {
  awk -v m="$2" '($1 == "require" && $2 == m) {print $3; exit} ($1 == m) {print $2; exit}' \
    "$here/$1/go.mod"
}

# Each module builds into a directory keyed by its own go.mod, so changing one pin rebuilds only
# that module's binaries.
module_dir() { echo "$cache/modules/$1-$(sha256sum < "$here/$1/go.mod" | cut -c1-10)"; }

k8s_version=$(required kubernetes k8s.io/kubernetes)

# The go build flags of a module's binaries, as each project's own release build stamps them.
flags_for() {
  local mod=$1 pkg version ldflags="-s -w"
  case $mod in
    kubernetes)
      local minor=${k8s_version#v1.}; minor=${minor%%.*}
      for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
      done
      flags=(-tags selinux,notest -ldflags "$ldflags") ;;
    helm) # its version, and the Kubernetes minor `helm template` assumes
      local k8s_minor
      k8s_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$here/helm/go.mod")
      ldflags+=" -X helm.sh/helm/v3/internal/version.version=$(required helm helm.sh/helm/v3)"
      for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
        ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
      done
      flags=(-ldflags "$ldflags") ;;
    versitygw)
      version=$(required versitygw github.com/versity/versitygw)
      flags=(-ldflags "$ldflags -X main.Version=$version") ;;
    traefik)
      version=$(required traefik github.com/traefik/traefik/v3)
      flags=(-ldflags "$ldflags -X github.com/traefik/traefik/v3/pkg/version.Version=$version") ;;
    traefik-v2)
      version=$(required traefik-v2 github.com/traefik/traefik/v2)
      flags=(-ldflags "$ldflags -X github.com/traefik/traefik/v2/pkg/version.Version=$version") ;;
    *) flags=(-ldflags "$ldflags") ;;
  esac
}

sets=("$@")
((${#sets[@]})) || sets=(controlplane)
for s in "${sets[@]}"; do [[ $s == controlplane || $s == lab ]] || usage; done
wanted() { local s; for s in "${sets[@]}"; do [[ $s == "$1" ]] && return 0; done; return 1; }

set_binaries() { # the binaries of a set
  local t set _mod name
  for t in "${targets[@]}"; do
    read -r set _mod name _ <<<"$t"
    [[ $set == "$1" ]] && echo "$name"
  done
}

has_all() { # has_all <dir> <set>
  local b
  for b in $(set_binaries "$2"); do [[ -x "$1/$b" ]] || return 1; done
}

assets=
if wanted controlplane && [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  if ! has_all "$KUBEBUILDER_ASSETS" controlplane; then
    log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS lacks one of: $(set_binaries controlplane | xargs)"
    exit 1
  fi
  assets=$KUBEBUILDER_ASSETS
fi

# What each module still has to build ("binary=package ..."), modules in build order.
declare -A missing=()
modules=()
for t in "${targets[@]}"; do
  read -r set mod name pkg <<<"$t"
  wanted "$set" || continue
  [[ $set == controlplane && -n $assets ]] && continue
  [[ -x "$(module_dir "$mod")/$name" ]] && continue
  [[ -v "missing[$mod]" ]] || modules+=("$mod")
  missing[$mod]+=" $name=$pkg"
done

state=$(mktemp -d)
downloader=
cleanup() {
  if [[ -n $downloader ]]; then
    pkill -TERM -P "$downloader" 2>/dev/null || true
    kill -TERM "$downloader" 2>/dev/null || true
    wait "$downloader" 2>/dev/null || true
  fi
  rm -rf "$state" "$cache"/modules/*/.build."$$".* 2>/dev/null || true
}
trap cleanup EXIT

download_all() { # in the background: each module's dependencies, in build order
  local mod start
  for mod in "${modules[@]}"; do
    start=$SECONDS
    log "downloading the modules $mod needs (network; overlaps the compiles)"
    if go -C "$here/$mod" mod download >"$state/$mod.log" 2>&1; then
      log "downloaded $mod's modules in $((SECONDS - start))s"
      touch "$state/$mod.ok"
    else
      touch "$state/$mod.failed"
    fi
  done
}

await_download() {
  local mod=$1 said=
  while [[ ! -e $state/$mod.ok ]]; do
    if [[ -e $state/$mod.failed ]] || ! kill -0 "$downloader" 2>/dev/null; then
      [[ -e $state/$mod.ok ]] && break # the downloader finished just now
      cat "$state/$mod.log" >&2 2>/dev/null || true
      log "go mod download failed in hack/controlplane/$mod"
      exit 1
    fi
    sleep 1
    [[ -n $said ]] || { log "waiting for $mod's downloads"; said=1; }
  done
}

progress() { # counts `go build -v`'s package lines (every 30 s), passes anything else through
  local label=$1 start=$2 last=$2 n=0 line
  while IFS= read -r line; do
    if [[ $line == *[[:space:]:]* || $line == '#'* ]]; then
      printf '%s\n' "$line" >&2
      continue
    fi
    n=$((n + 1))
    if ((SECONDS - last >= 30)); then
      last=$SECONDS
      log "  $label: $n packages compiled ($((SECONDS - start))s)"
    fi
  done
}

build_module() {
  local mod=$1 dir tmp entry i start names=() pkgs=() flags=()
  for entry in ${missing[$mod]}; do names+=("${entry%%=*}"); pkgs+=("${entry#*=}"); done
  dir=$(module_dir "$mod")
  mkdir -p "$dir"
  tmp=$(mktemp -d "$dir/.build.$$.XXXX")
  flags_for "$mod"
  # One go build for all of a module's binaries: packages compile once, links run side by side.
  local target=$tmp/
  ((${#pkgs[@]} > 1)) || target=$tmp/${names[0]}
  await_download "$mod"
  log "building ${names[*]} (hack/controlplane/$mod; a cold build takes minutes on 2 cores)"
  start=$SECONDS
  CGO_ENABLED=0 go -C "$here/$mod" build -v -trimpath -buildvcs=false -o "$target" \
    "${flags[@]}" "${pkgs[@]}" 2>&1 | progress "${names[*]}" "$start"
  for i in "${!names[@]}"; do
    if ((${#pkgs[@]} > 1)); then mv "$tmp/${pkgs[i]##*/}" "$dir/${names[i]}"
    else mv "$tmp/${names[i]}" "$dir/${names[i]}"; fi
  done
  rmdir "$tmp"
  log "built ${names[*]} in $((SECONDS - start))s"
}

if ((${#modules[@]})); then
  download_all &
  downloader=$!
  for mod in "${modules[@]}"; do build_module "$mod"; done
fi

# A directory of symlinks per set, keyed by the go.mod of every module the set uses.
set_dir() {
  local t set mod key
  key=$(for t in "${targets[@]}"; do
    read -r set mod _ <<<"$t"
    [[ $set == "$1" ]] && echo "$mod"
  done | sort -u | while read -r mod; do cat "$here/$mod/go.mod"; done | sha256sum | cut -c1-10)
  case $1 in
    controlplane) echo "$cache/$k8s_version-$key" ;;
    *) echo "$cache/$1-$k8s_version-$key" ;;
  esac
}

for s in "${sets[@]}"; do
  if [[ $s == controlplane && -n $assets ]]; then echo "$assets"; continue; fi
  out=$(set_dir "$s")
  mkdir -p "$out"
  for t in "${targets[@]}"; do
    read -r set mod name _ <<<"$t"
    [[ $set == "$s" ]] && ln -sfn "$(module_dir "$mod")/$name" "$out/$name"
  done
  has_all "$out" "$s"
  echo "$out"
done
