#!/usr/bin/env bash
# Build the operator image from the Dockerfile with buildah: no Docker daemon needed.
#
# Usage: hack/image/build.sh [IMAGE]     -> prints the image reference (progress on stderr)
#
# The Dockerfile's default base, python:3.11-slim, comes from a container registry. Where none is
# reachable (as on the project's build machines) and PYTHON_IMAGE is not set, the base is made
# from Debian's packages instead (hack/image/base.sh: mmdebstrap, python3, python3-venv), once,
# and kept in buildah's local storage. Needs root (or a configured rootless buildah), buildah and
# mmdebstrap (`make lab-packages`).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/pyproject.toml")
image=${1:-localhost/experiment-operator:$version}
base=${PYTHON_IMAGE:-}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

log() { printf '[image] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "needs $1: run 'make lab-packages' as root"; exit 1; }; }

need buildah
[[ -n $base ]] || base=$(bash "$root/hack/image/base.sh")

# The system CA bundle goes in as a build secret (pip needs it behind a TLS-intercepting proxy);
# secrets are never written to a layer.
ca=${BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
secret=()
[[ -f $ca ]] && secret=(--secret "id=ca,src=$ca")
log "building $image on $base"
buildah bud --quiet --isolation=chroot --network=host --layers "${secret[@]}" \
  --build-arg "PYTHON_IMAGE=$base" -t "$image" \
  "$root" >/dev/null
echo "$image"
