#!/usr/bin/env bash
# Make the Debian Python base image from Debian's packages, once per recipe; print its reference.
#
# Usage: hack/image/base.sh     -> prints the base reference (progress on stderr)
#
# No container registry is reachable on the project's build machines, so the base that the
# operator image (Dockerfile) and the lab's MLflow images (lab/images/) build on is a minimal
# bookworm root filesystem made with mmdebstrap (Debian's python3 3.11, its venv module and the
# CA certificates), turned into an image in buildah's local storage. The image carries a label
# with a hash of this recipe: a changed recipe makes a new base, an unchanged one is reused.
set -euo pipefail

base=localhost/experiment-operator-base:bookworm
label=io.experiment-operator.base-recipe
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
recipe=(--variant=minbase --include=python3,python3-venv,ca-certificates
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/locale/*'
  bookworm)
key=$(printf '%s\n' "${recipe[@]}" | sha256sum | cut -c1-16)

log() { printf '[image] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "needs $1: run 'make lab-packages' as root"; exit 1; }; }

need buildah
have=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$label\"}}" "$base" \
  2>/dev/null || true)
if [[ $have != "$key" ]]; then
  need mmdebstrap
  log "making the base image $base from Debian's packages (once; ~1 min)"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mmdebstrap --quiet "${recipe[@]}" "$tmp/rootfs.tar"
  container=$(buildah from scratch)
  buildah add --quiet "$container" "$tmp/rootfs.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --label "$label=$key" "$container"
  buildah commit --quiet --rm "$container" "$base" >/dev/null
fi
echo "$base"
