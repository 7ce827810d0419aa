#!/usr/bin/env bash
# Install the Debian packages the lab's real node tier needs (idempotent; fast when installed).
#
# Usage: lab/packages.sh [--check]
#   --check   only report what is missing (exit 1 if anything is), never install
#
# What and why:
#   containerd runc containernetworking-plugins   the node's container runtime and pod network
#   iptables                                      kube-proxy programs Services with it
#   buildah mmdebstrap                            the lab's images, built without a registry
#   chromium chromium-driver chromium-headless-shell   the browser tests (Playwright/Selenium)
#   gcc libc6-dev                                 the pause image's static binary
#   postgresql                                    the MLflow backend store (only when absent)
#
# Installed without recommends: that keeps it to ~45 packages and upgrades only the system
# packages they need (login, passwd with uidmap); with recommends chromium would pull ~150
# packages and upgrade ~17 (systemd, udev, perl, ...). No service is started by the install on
# a machine without systemd; the lab starts its own containerd with its own config.
set -euo pipefail

log() { printf '[lab-packages] %s\n' "$*" >&2; }

packages=(containerd runc containernetworking-plugins iptables buildah mmdebstrap
  chromium chromium-driver chromium-headless-shell gcc libc6-dev)
# PostgreSQL: any installed server major version will do (the lab finds initdb/pg_ctl itself).
if ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  packages+=(postgresql)
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || missing+=("$pkg")
done

if ((${#missing[@]} == 0)); then
  log "all ${#packages[@]} packages installed"
  exit 0
fi

install_cmd="apt-get update && apt-get install -y --no-install-recommends ${missing[*]}"
if [[ ${1:-} == --check ]]; then
  log "missing: ${missing[*]}"
  exit 1
fi
if ((EUID != 0)); then
  log "missing Debian packages: ${missing[*]}"
  log "installing them needs root; run one of:"
  log "  sudo make lab-packages"
  log "  sudo sh -c '$install_cmd'"
  exit 1
fi

start=$SECONDS
log "installing ${#missing[@]} package(s) with their dependencies: ${missing[*]}"
log "apt-get update"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt run (another checkout, unattended upgrades) instead of failing.
lock=(-o DPkg::Lock::Timeout=600)
apt-get "${lock[@]}" update -qq
log "apt-get install (a cold install takes a few minutes; chromium is most of it)"
apt-get "${lock[@]}" install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}" |
  { grep -E '^(Get:|Setting up|Fetched|[0-9]+ upgraded)' || true; }

still=()
for pkg in "${missing[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  [[ $status == installed ]] || still+=("$pkg")
done
if ((${#still[@]})); then
  log "still not installed: ${still[*]}"
  exit 1
fi
log "installed in $((SECONDS - start)) s"
