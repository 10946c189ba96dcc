#!/usr/bin/env bash
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The current engine generation for the system tests' matrix, from Debian unstable, without installing
# anything system-wide (`make current-engines`; `make test` runs it):
#
#   .build/current/bins    dockerd + docker 28, containerd + ctr 2.x, crane: unpacked .debs that run on Debian 12
#   .build/current/chroot  a Debian unstable chroot (debootstrap minbase) with podman 5, skopeo 1.22 and
#                          Python 3.14, plus /opt/ansible: a venv with the newest ansible-core and requests
#
# Each is built once per set of package versions: the directory's .key file holds the versions it was
# made from, and a rebuild happens only when the mirror publishes others.  The mirror's URI is taken from
# this machine's own apt sources.  Prints one line per part; exits non-zero when a part cannot be built
# (the tests then report that generation as skipped, with this script's message).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CURRENT=${AIRGAP_CURRENT_DIR:-$ROOT/.build/current}
BIN_PACKAGES=(docker.io docker-cli containerd crane cosign oras)
CHROOT_PACKAGES=(podman skopeo python3 python3-venv ca-certificates)
ANSIBLE_PIP=("ansible-core" "requests")
HOST_CA=/etc/ssl/certs/ca-certificates.crt

mirror_uri() {
  local uri=""
  if compgen -G "/etc/apt/sources.list.d/*.sources" >/dev/null; then
    uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources)
  fi
  if [ -z "$uri" ] && [ -f /etc/apt/sources.list ]; then
    uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' /etc/apt/sources.list)
  fi
  [ -n "$uri" ] || { echo "current-engines: no Debian mirror in /etc/apt/sources*" >&2; exit 1; }
  echo "$uri"
}

MIRROR=$(mirror_uri)
APT_DIR=$CURRENT/apt
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
echo "deb $MIRROR sid main" > "$APT_DIR/sources.list"
APT=(-o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null
     -o Dir::State::Lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${APT[@]}" update -qq

versions() {
  local p
  for p in "$@"; do
    printf '%s=%s\n' "$p" "$(apt-cache "${APT[@]}" show --no-all-versions "$p" | awk '/^Version:/{print $2; exit}')"
  done
}

build_bins() {
  local dest=$CURRENT/bins key
  key=$(versions "${BIN_PACKAGES[@]}")
  if [ -f "$dest/.key" ] && [ "$(cat "$dest/.key")" = "$key" ]; then
    echo "current-engines: bins present ($(echo "$key" | tr '\n' ' '))"; return
  fi
  remove_tree "$dest.new" && mkdir -p "$dest.new/debs" "$dest.new/root"
  local pkgs=() p
  for p in "${BIN_PACKAGES[@]}"; do pkgs+=("$p/sid"); done
  (cd "$dest.new/debs" && apt-get "${APT[@]}" download -qq "${pkgs[@]}")
  for p in "$dest.new"/debs/*.deb; do dpkg-deb -x "$p" "$dest.new/root"; done
  rm -rf "$dest.new/debs"
  "$dest.new/root/usr/sbin/dockerd" --version >/dev/null
  "$dest.new/root/usr/bin/containerd" --version >/dev/null
  echo "$key" > "$dest.new/.key"
  remove_tree "$dest" && mv "$dest.new" "$dest"
  echo "current-engines: bins built ($(echo "$key" | tr '\n' ' '))"
}

# Runs a command inside the chroot in a private mount namespace: the mounts vanish with the command.
in_chroot() {
  local root=$1; shift
  # shellcheck disable=SC2016  # the inner script expands its own arguments
  unshare -m --propagation private /bin/sh -c '
    root=$1; shift
    mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" && mount --rbind /sys "$root/sys"
    exec chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/var/tmp \
      PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"' in_chroot "$root" "$@"
}

build_chroot() {
  local dest=$CURRENT/chroot key
  key=$(versions "${CHROOT_PACKAGES[@]}"; printf 'pip=%s\n' "${ANSIBLE_PIP[*]}")
  if [ -f "$dest/.key" ] && [ "$(cat "$dest/.key")" = "$key" ] && [ -x "$dest/opt/ansible/bin/ansible-playbook" ]; then
    echo "current-engines: chroot present ($(echo "$key" | tr '\n' ' '))"; return
  fi
  command -v debootstrap >/dev/null || { echo "current-engines: debootstrap is missing (make deps)" >&2; exit 1; }
  remove_tree "$dest.new"
  local include
  include=$(IFS=,; echo "${CHROOT_PACKAGES[*]}")
  debootstrap --variant=minbase --include="$include" sid "$dest.new" "$MIRROR" > "$CURRENT/debootstrap.log" 2>&1 \
    || { tail -20 "$CURRENT/debootstrap.log" >&2; exit 1; }
  cp "$HOST_CA" "$dest.new/etc/ssl/certs/host-ca.crt"
  in_chroot "$dest.new" python3 -m venv /opt/ansible
  in_chroot "$dest.new" /opt/ansible/bin/pip install -q "${ANSIBLE_PIP[@]}"
  in_chroot "$dest.new" podman --version >/dev/null
  rm -rf "$dest.new/var/cache/apt/archives/"*.deb
  echo "$key" > "$dest.new/.key"
  remove_tree "$dest" && mv "$dest.new" "$dest"
  echo "current-engines: chroot built ($(echo "$key" | tr '\n' ' '))"
}

# Never remove a tree something is mounted in (a chroot's /dev is the host's /dev).
remove_tree() {
  if awk -v p="$1" '$5 == p || index($5, p "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
    echo "current-engines: $1 has mounts; not removing it" >&2; exit 1
  fi
  rm -rf "$1"
}

build_bins
build_chroot
