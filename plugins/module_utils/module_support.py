# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the modules share: the engine options and turning them into a store.

This file is the only part of module_utils the modules need Ansible for; it
imports nothing from Ansible itself, so the core stays usable without it.
"""

import contextlib
import signal
import time

from .atomic import dest_lock

ENGINE_ARGS = dict(
    engine=dict(type="str", default="docker", choices=["docker", "podman", "containerd", "registry", "oci"]),
    engine_host=dict(type="str"),
    containerd_namespace=dict(type="str"),
    platform=dict(type="str"),
    username=dict(type="str"),
    password=dict(type="str", no_log=True),
    validate_certs=dict(type="bool", default=True),
    ca_path=dict(type="path"),
    insecure_registry=dict(type="bool", default=False),
    timeout=dict(type="int", default=60),
)


SIGNATURE_ARGS = dict(
    signed_by=dict(type="list", elements="str"),
    sigstore_trust_root=dict(type="path"),
    sigstore_identities=dict(type="list", elements="dict", options=dict(
        issuer=dict(type="str", required=True),
        subject=dict(type="str", required=True),
    )),
)


def signature_argument_spec(spec):
    """``spec`` with the signature options (plugins/doc_fragments/signatures.py documents them)."""
    spec = dict(spec)
    spec.update(SIGNATURE_ARGS)
    return spec


def engine_argument_spec(**module_args):
    spec = dict(ENGINE_ARGS)
    spec.update(module_args)
    return spec


def store_from_params(params):
    from .stores.store import open_store  # pylint: disable=import-outside-toplevel
    return open_store(params["engine"], params["engine_host"], namespace=params["containerd_namespace"],
                      platform=params.get("platforms") or params["platform"], username=params["username"], password=params["password"],
                      validate_certs=params["validate_certs"], ca_path=params["ca_path"], timeout=params["timeout"],
                      insecure_http=params["insecure_registry"])


class Terminated(BaseException):
    """SIGTERM, raised so that temp files are removed on the way out."""


def _raise_terminated(signum, frame):  # pylint: disable=unused-argument
    raise Terminated("terminated by signal %d" % signum)


def clean_up_on_sigterm():
    """Turn SIGTERM (a killed task, a stopped play) into an exception: every temp file is then removed as on any failure."""
    signal.signal(signal.SIGTERM, _raise_terminated)


class Stopwatch:
    def __init__(self):
        self.started = time.time()

    @property
    def seconds(self):
        return round(time.time() - self.started, 3)

    def throughput(self, size):
        """MB/s for ``size`` bytes since the start (None for nothing measured)."""
        elapsed = time.time() - self.started
        return round(size / elapsed / 1e6, 1) if size and elapsed > 0 else None


def describe_images(images, converted=False):
    """The ``images`` return value: one dict per image, with both identities and whether its manifest is the
    source's (``kept``), one made because the source had none (``made``), or a conversion asked for (``converted``)."""
    return [{"id": image.id, "repo_tags": sorted(image.repo_tags), "diff_ids": list(image.diff_ids), "size": image.size,
             "manifest_digest": image.manifest_digest, "index_digest": image.index_digest, "platform": image.platform_name,
             "converted_from": image.converted_from,
             "manifest": "kept" if image.manifest is not None else ("converted" if converted else "made"),
             "layers": [{"diff_id": layer.diff_id, "digest": image.layer_blob_digest(layer), "compression": layer.compression
                         if image.manifest is not None else None} for layer in image.layers]}
            for image in images]


def writer_lock(dest, check_mode):
    """One task at a time writes ``dest`` (a lock beside it, for the check and the write); check mode writes nothing, not even the lock."""
    return contextlib.nullcontext() if check_mode else dest_lock(dest)
