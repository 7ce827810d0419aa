#!/usr/bin/env bash
# Build the operator image from the Dockerfile with buildah: no Docker daemon needed.
#
# Usage: hack/image/build.sh [IMAGE]     -> prints the image reference (progress on stderr)
#
# The Dockerfile's default base, python:3.11-slim, comes from a container registry. Where none is
# reachable (as on the project's build machines) and PYTHON_IMAGE is not set, the base is made
# from Debian's packages instead (mmdebstrap: python3, python3-venv), once, and kept in
# buildah's local storage. Needs root (or a configured rootless buildah), buildah and mmdebstrap.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")
image=${1:-localhost/experiment-operator:$version}
base=${PYTHON_IMAGE:-localhost/experiment-operator-base:bookworm}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

log() { printf '[image] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "needs $1 (apt-get install $1)"; exit 1; }; }

need buildah
if [[ -z ${PYTHON_IMAGE:-} ]] && ! buildah inspect --type image "$base" >/dev/null 2>&1; then
  need mmdebstrap
  log "making the base image $base from Debian's packages (once)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates \
    --aptopt='APT::Install-Recommends "false"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    bookworm "$tmp/rootfs.tar"
  container=$(buildah from scratch)
  buildah add --quiet "$container" "$tmp/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 "$container"
  buildah commit --quiet --rm "$container" "$base" >/dev/null
fi

# The system CA bundle goes in as a build secret (pip needs it behind a TLS-intercepting proxy);
# secrets are never written to a layer.
ca=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[[ -f $ca ]] && secret=(--secret "id=ca,src=$ca")
log "building $image on $base"
buildah bud --quiet --layers "${secret[@]}" --build-arg "PYTHON_IMAGE=$base" -t "$image" \
  "$root" >/dev/null
echo "$image"
