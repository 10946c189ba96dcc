#!/usr/bin/env bash
# A re-run with nothing to do: image_load, image_archive_info and image_store_info against an OCI layout, each as its
# own `ansible-playbook -i localhost, -c local`, three runs each, in Ansible's worker (the controller's Python) and as
# a module (ansible_python_interpreter=/usr/bin/python3). Prints wall seconds of the whole ansible-playbook.
#     bash bench/bench_noop.sh        (from the repository root, after `make venv link`)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/airgap-bench-noop-XXXXXX)
trap 'rm -rf "$work"' EXIT
PYTHONPATH="$root/.build" "$root/.venv/bin/python" - "$work/image.tar" <<'PY'
import os, sys
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.formats.archive import save_archive
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
image = build_image([layer_from_bytes(layer_tar({"data/a": os.urandom(4 << 20)}), "data")], [parse_reference("bench/noop:1")])
save_archive([image], sys.argv[1])
PY
layout="$work/layout"
declare -A tasks=(
  [image_load]="airgap.images.image_load: {src: $work/image.tar, engine: oci, engine_host: $layout}"
  [image_archive_info]="airgap.images.image_archive_info: {path: $work/image.tar}"
  [image_store_info]="airgap.images.image_store_info: {images: [bench/noop:1], engine: oci, engine_host: $layout}"
)
export ANSIBLE_COLLECTIONS_PATH="$root/.build"
playbook="$root/.venv/bin/ansible-playbook"
for name in image_load image_archive_info image_store_info; do
  printf -- '- hosts: localhost\n  gather_facts: false\n  tasks:\n    - %s\n' "${tasks[$name]}" > "$work/$name.yml"
done
"$playbook" -i localhost, -c local "$work/image_load.yml" > /dev/null   # the first load
echo "| task, nothing to do | in the worker | as a module |"
echo "|---|---:|---:|"
for name in image_load image_archive_info image_store_info; do
  cells=()
  for python in "$root/.venv/bin/python" /usr/bin/python3; do
    times=()
    for _ in 1 2 3; do
      start=$(date +%s.%N)
      out=$("$playbook" -i localhost, -c local -e "ansible_python_interpreter=$python" "$work/$name.yml")
      end=$(date +%s.%N)
      grep -q "changed=0" <<< "$out" || { echo "$name did not report changed=0:"; echo "$out"; exit 1; }
      times+=("$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }')")
    done
    cells+=("${times[*]} s")
  done
  echo "| $name | ${cells[0]} | ${cells[1]} |"
done
