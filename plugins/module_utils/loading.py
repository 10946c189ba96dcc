# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Loading images into a store: what it lacks (``plan_load``, ``plan_shipping``), sending it, and checking that it
holds them afterwards. Light on imports: image_store_info runs this on every host of a rollout."""

from .errors import ArchiveError, ImageError, ImageNotFoundError
from .model import absent_layers
from . import shipping


class LoadPlan:
    """For each image of an archive: present with all tags (leave alone), present without some tags (tag), or absent (load)."""

    def __init__(self):
        self.present = []
        self.to_tag = []  # (archive image, store image, missing references)
        self.to_load = []

    @property
    def changed(self):
        return bool(self.to_tag or self.to_load)


def plan_load(store, images):
    plan = LoadPlan()
    for image in images:
        present = _present(store, image)
        if present is None:
            plan.to_load.append(image)
            continue
        held = set(present.repo_tags)
        missing = [ref for ref in image.references if ref.tag and not ref.digest and ref.familiar() not in held]
        if missing:
            plan.to_tag.append((image, present, missing))
        else:
            plan.present.append({"id": image.id, "repo_tags": sorted(image.repo_tags), "reason": "present with all its tags"})
    return plan


def _present(store, image):
    """The store's copy of ``image`` (same config and layers), looked up by its tags, then by ID: the config
    digest, or a manifest digest (Docker's containerd image store knows images by that). A store that finds images by
    manifest digest more cheaply than by reading them (containerd) is asked that first, and then whether it may hold
    the image at all."""
    by_digest = getattr(store, "present_by_digest", None)
    if by_digest is not None and image.manifest is not None:
        found = by_digest(image)
        if found is not None:
            return found
    may_hold = getattr(store, "may_hold", None)
    if may_hold is not None and not may_hold(image):
        return None
    names = [str(ref) for ref in image.references if ref.tag]
    if getattr(store, "finds_by_id", True):
        names += [image.id] + list(image.digests)
    for name in names:
        try:
            found = store.find(name)
        except ImageNotFoundError:
            found = None
        if found is not None and found.same_content(image):
            return found
    return None


def check_layers_available(store, images):
    """A thin archive can only be loaded where the engine has the layers it leaves out."""
    absent = [(image, layer) for image in images for layer in image.layers if not layer.available]
    if not absent:
        return
    held = store.held_layers()
    for image, layer in absent:
        if not store.holds(image, layer, held):
            raise ArchiveError("%s is not in the archive and %s does not have it: load the base (or a full) archive first"
                               % (layer.what, store))


def run_load(store, plan, send):
    """Send ``plan.to_load`` with ``send(images)`` (after checking a thin source can be loaded) and tag ``plan.to_tag``."""
    if plan.to_load:
        check_layers_available(store, plan.to_load)
        send(plan.to_load)
    tagged = []
    for _image, present, missing in plan.to_tag:
        for reference in missing:
            store.tag(present, reference)
            tagged.append(reference.familiar())
    return plan.to_load, tagged


def apply_load(store, images, plan, send, check_mode):
    """Carry out ``plan`` (or, in check mode, say what it would do) and check the result; returns (loaded IDs, tags added)."""
    if check_mode:
        return [image.id for image in plan.to_load], [ref.familiar() for _i, _p, missing in plan.to_tag for ref in missing]
    if not plan.changed:
        return [], []
    loaded, tagged = run_load(store, plan, send)
    verify_loaded(store, images)
    return [image.id for image in loaded], tagged


def archive_sender(store, archive):
    """Load from an open archive. containerd takes the file (``ctr`` imports files only: the whole file as it is, or
    an archive of the wanted images written beside it); Docker and Podman the archive's own bytes when they read them
    as they are (``load_archive``); every other store gets the archive's images streamed through the verifying
    writer, the layers the archive lacks left to the store."""
    send_images = images_sender(store)

    def send(images):
        if getattr(store, "imports_files", False) and not archive.directory:
            whole = len(images) == len(archive.images) and not any(image.referrers for image in archive.images)  # ctr would list them as images
            store.load(archive.path, images=None if whole else [image.id for image in images])
        elif hasattr(store, "load_archive"):
            store.load_archive(archive, images)
        else:
            send_images(images)
    return send


def images_sender(store, leave_out=frozenset()):
    """Load model images (e.g. re-assembled from separated tarballs); layers no source holds are left to the target.

    The layers in ``leave_out`` (what the target's ``held_layers`` said it holds) are not sent either: a pull then
    fetches only what is new.
    """
    def send(images):
        held = [image.layer_blob_digest(layer) for image in images for layer in image.layers
                if leave_out and store.holds(image, layer, leave_out)]
        store.load_images(images, omit_layers=absent_layers(images) + held)
    return send


def new_layer_bytes(images, held):
    """Uncompressed bytes of the layers of ``images`` not in ``held``, each counted once."""
    sizes = {layer.diff_id: layer.size or 0 for image in images for layer in image.layers if layer.diff_id not in held}
    return sum(sizes.values())


def plan_shipping(store, bundle, staging=None):
    """What a host must receive of ``bundle`` (an OCI layout described by ``archive_info``) to hold all its images;
    of a multi-platform image, the platform the store is for (the host's, unless the task names one)."""
    bundle = shipping.for_platform(bundle, getattr(store, "platform", None))
    load_plan = plan_load(store, shipping.bundle_images(bundle))
    held = store.held_layers() if load_plan.to_load else set()
    key = "digest" if store.holds_blobs and not shipping.is_separated(bundle) else "diff_id"
    return shipping.files_to_ship(bundle, load_plan, held, staging, key)


def kept_digests(store, images):
    """Per image (by config digest): the digest the store knows it by after a load (its manifest's or index's: the
    store's key, or one of its RepoDigests, as Podman keeps them), or None (Docker's classic store drops them)."""
    known = {}
    for image in images:
        present = _present(store, image)
        known[image.id] = _known_digest(present, image) if present is not None else None
    return known


def _known_digest(present, image):
    if present.digest is not None:
        return present.digest
    repo_digests = [name.rsplit("@", 1)[-1] for name in present.digests if "@" in name]
    return next((digest for digest in (image.index_digest, image.manifest_digest) if digest in repo_digests), None)


def verify_loaded(store, images):
    """After a load, every image must be there with every tag: the engine's own word, read back."""
    for image in images:
        present = _present(store, image)
        if present is None:
            raise ImageError("%s reported success, but %s (%s) is not there afterwards" % (store, image.describe(), image.id))
        missing = sorted(set(image.repo_tags) - set(present.repo_tags))
        if missing:
            raise ImageError("%s loaded %s but it lacks the tags %s" % (store, image.id, ", ".join(missing)))


def store_info(params):
    """image_store_info's result for ``params`` (the engine options, ``images``, ``bundle``, ``staging``): what the store
    holds of each image and, with a ``bundle``, what the host must receive of it (``plan_shipping``)."""
    from .module_support import store_from_params  # pylint: disable=import-outside-toplevel
    store = store_from_params(params)
    result = dict(changed=False, images=describe_held(store, params.get("images") or []))
    if params.get("bundle") is not None:
        result.update(plan_shipping(store, params["bundle"], params.get("staging")).result())
    return result


def describe_held(store, selectors):
    """What ``store`` holds of each selector: ID, tags and DiffIDs, or present=false."""
    held = []
    for selector in selectors:
        found = store.find(selector)
        entry = {"name": selector, "present": found is not None}
        if found is not None:
            entry.update(id=found.id, digest=found.digest, repo_tags=found.repo_tags, diff_ids=list(found.diff_ids))
        held.append(entry)
    return held
