# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One interface over every store images come from and go to.

``open_store(engine, ...)`` gives a store with:

* ``find(selector)`` → ``StoreImage`` (ID, tags, DiffIDs) or None;
* ``held_layers()`` → the digests of the layers it holds (DiffIDs, and blob digests where it keeps blobs);
* ``holds(image, layer, held)`` → whether a thin archive of ``image`` may leave ``layer`` out for this store;
* ``open_images(selectors, workdir)`` → a context manager yielding model images whose layers stream from
  the store (Docker and Podman export to a temp file in ``workdir`` first: the Engine API gives no other way
  to read an image's config bytes);
* ``load(archive_path, images=None, omit_layers=())`` → load all or some images of an archive;
* ``tag(store_image, reference)``.
"""

import contextlib
import fcntl
import os
import secrets
import tempfile
import threading

from ..digest import verified_file_chunks
from ..formats.archive import open_archive
from ..formats.docker_archive import write_docker_archive
from ..formats.oci_layout import artifact_key, made_manifest
from ..errors import ImageError, ImageNotFoundError, InvalidReferenceError, StoreError
from ..compression import ZSTD
from ..model import absent_layers, held_blobs, with_platforms
from ..reference import parse_image_selector, parse_reference, resolve_all, resolve_selector
from .containerd import ContainerdStore
from .docker import DockerClient, DockerStore, error_message, version_tuple
from .layout import LayoutStore
from .registry import RegistryStore

ENGINES = ("docker", "podman", "containerd", "registry", "oci")
ZSTD_API = (1, 42)  # Docker 23: the first to load zstd layers
PODMAN_DEFAULT_HOST = "unix:///run/podman/podman.sock"
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux; Python 3.10+ names it
PIPE_SIZE = 1024 * 1024  # the default 64 KiB pipe costs a thread switch per 64 KiB of a load's body


class StoreImage:
    """What a store says of one image without reading its layers.

    ``id`` is what the store calls the image's ID: the config digest, except in Docker's containerd image store (the
    manifest's or index's digest). ``digest`` is the manifest (or index) digest where the store knows images by it
    (containerd, Docker's containerd store, registries, OCI layouts), else None (Docker's classic store, Podman).
    """

    def __init__(self, image_id, references, diff_ids, config_digest=None, digests=(), digest=None):
        self.id = image_id
        self.references = list(references)
        self.diff_ids = list(diff_ids)
        self.config_digest = config_digest
        self.digest = digest
        self.digests = list(digests)
        self.attachments = None  # unknown; else what is attached to it (attachment_keys)

    @property
    def repo_tags(self):
        return sorted(ref.familiar() for ref in self.references if ref.tag)

    def same_content(self, image):
        """Whether this is ``image`` (a model Image): where the store knows images by manifest and ``image`` has one,
        the same manifest (or index) digest; else the same config digest, or, where the store knows no config digest
        (Docker's containerd store), the digest of the manifest our writer makes. The DiffIDs match in every case."""
        if self.diff_ids != image.diff_ids:
            return False
        if self.digest is not None and image.manifest is not None:
            return self.digest in image.digests
        known = [digest for digest in (self.config_digest, self.id) if digest]
        if image.id not in known and self.digest is not None and self.config_digest is None:
            return self.digest == made_manifest(image).digest  # Docker's containerd store keeps the manifest we made
        return image.id in known


def _references(names):
    refs = []
    for name in names or []:
        if name.startswith("<none>"):
            continue
        try:
            refs.append(parse_reference(name))
        except InvalidReferenceError:
            continue
    return refs


def store_image_from_model(image):
    """A store that holds model images (OCI layout, containerd, registry) knows each by its index or manifest digest;
    an image stored without a manifest (there is none in these stores) would be known by its config."""
    found = StoreImage(image.id, image.references, image.diff_ids, image.id, image.digests, image.digest)
    found.attachments = attachment_keys(image.referrers)
    return found


def attachment_keys(artifacts):
    """What is attached to an image, comparable across stores (``artifact_key``s, sorted)."""
    return sorted(artifact_key(artifact) for artifact in artifacts)


class PlatformsStoreImage(StoreImage):
    """What a name points at when it is a multi-platform index with several selected platforms (a registry knows
    images by name only): described as the first platform's image, the same content as any of them."""

    def __init__(self, platform_images):
        first = platform_images[0]
        StoreImage.__init__(self, first.id, first.references, first.diff_ids, first.config_digest, first.digests,
                            first.digest)
        self.platform_images = platform_images

    def same_content(self, image):
        return any(StoreImage.same_content(platform_image, image) for platform_image in self.platform_images)


def with_platform_images(found, candidates):
    """``found`` or, when other ``candidates`` are platforms of the same index, a PlatformsStoreImage of them all."""
    if found is None or found.digest is None:
        return found
    platforms = [found] + [other for other in candidates if other.digest == found.digest and other.id != found.id]
    return PlatformsStoreImage(platforms) if len(platforms) > 1 else found


class _ModelStore:
    """Stores whose images are model Images already (OCI layout, containerd, registry): they hold blobs, so a layer is
    held when the blob the image's manifest names is."""

    holds_blobs = True

    @staticmethod
    def holds(image, layer, held):
        return image.layer_blob_digest(layer) in held_blobs(held)

    def _candidates(self):
        return [store_image_from_model(image) for image in self.images()]

    def find(self, selector):
        """The image ``selector`` names; of a multi-platform image with several platforms selected, all of them."""
        candidates = self._candidates()
        found = resolve_selector(selector, candidates)
        return with_platform_images(found, candidates)

    def load(self, archive_path, images=None, omit_layers=()):  # pylint: disable=unused-argument
        """Load all or the selected images of the archive at ``archive_path`` (``load_images``); returns their IDs."""
        with open_archive(archive_path) as archive:
            wanted = _subset(archive.images, images)
            self.load_images(wanted)
        return [image.id for image in wanted]

    def _artifacts(self):
        """What a selector may name instead of an image: only layouts hold artifacts beside images."""
        return ()

    @contextlib.contextmanager
    def open_images(self, selectors, workdir=None):  # pylint: disable=unused-argument
        """The selected images; of a multi-platform image, every selected platform's."""
        every = self.images()
        found = resolve_all(selectors, every, str(self), self._artifacts())
        yield [_only_selected_tags(platform_image, selector) for image, selector in zip(found, selectors)
               for platform_image in with_platforms(image, every)]


def _only_selected_tags(image, selector):
    """An image saved by a tag carries that tag (as docker save does); by ID it carries all its tags."""
    selected = parse_image_selector(selector)
    if selected.reference is not None and selected.reference.tag and selected.reference in image.references:
        return image.with_references([selected.reference])
    return image


class OCIStore(_ModelStore, LayoutStore):
    def _artifacts(self):
        return self.artifacts()

    def held_layers(self):
        return self.layer_ids()

    def load_images(self, images, omit_layers=()):  # pylint: disable=unused-argument
        self.import_images(images)

    def tag(self, store_image, reference):  # pylint: disable=arguments-renamed
        LayoutStore.tag(self, store_image.digest or store_image.id, reference)


class ContainerdImageStore(_ModelStore, ContainerdStore):
    """Reading an image costs two ``ctr`` runs, so the namespace's images are read once until the next change; an
    image whose manifest or index digest is known is found without reading any (``present_by_digest``), and one whose
    config the content store lacks is known absent without reading any (``may_hold``)."""

    imports_files = True  # ``ctr images import`` reads archive files, not streams
    _read = None
    _targets = None
    _content = None

    def _candidates(self):
        if self._read is None:
            self._read = _ModelStore._candidates(self)
        return self._read

    def _forget_reads(self):
        self._read = self._targets = self._content = None

    def present_by_digest(self, image):
        """The store's copy of ``image`` (one with a manifest) when names point at its index or manifest and the content
        store holds that document, the manifest and the config: what reading the image would check, in two ``ctr`` runs
        for all images instead of two per image. None when no name points there (``find`` then reads the images)."""
        if self._targets is None:
            self._targets = self.image_targets()
        documents = [doc.digest for doc in (image.index, image.manifest) if doc is not None]
        for digest in documents:
            names = sorted(name for name, (target, _media_type) in self._targets.items() if target == digest)
            if names:
                break
        else:
            return None
        if not set(documents + [image.id]) <= self._held_content():
            return None
        return StoreImage(image.id, _references(names), image.diff_ids, image.id, image.digests, digest)

    def may_hold(self, image):
        """Whether any image of the namespace can be ``image``: every image that is holds its config blob, so where the
        content store has no such blob no image needs reading (one ``ctr content ls`` answers for all images)."""
        return image.id in self._held_content()

    def _held_content(self):
        if self._content is None:
            self._content = self.content_digests()
        return self._content

    def held_layers(self):
        return self.layer_ids()

    def load(self, archive_path, images=None, omit_layers=()):  # pylint: disable=arguments-renamed
        if images is None and not omit_layers:
            return self._import(archive_path)
        with open_archive(archive_path) as archive:
            wanted = _subset(archive.images, images)
            return self.load_images(wanted, list(omit_layers) + absent_layers(wanted), os.path.dirname(os.path.abspath(archive_path)))

    def load_images(self, images, omit_layers=(), workdir=None):
        """ctr imports files only: our archive of ``images`` goes through a temp file in ``workdir``."""
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".airgap-import-", suffix=".tar") as temp:
            write_docker_archive(images_only(images), temp, omit_layers)
            temp.flush()
            return self._import(temp.name)

    def _import(self, path):
        """``ctr images import``; when it fails, the names it registered are removed again (containerd keeps them)."""
        self._forget_reads()
        before = set(self.image_targets())
        try:
            return ContainerdStore.load(self, path)
        except ImageError:
            self._forget(before)
            raise

    def _forget(self, before):
        try:
            added = sorted(set(self.image_targets()) - before)
            if added:
                self.run("images", "rm", *added)
        except ImageError:
            pass  # containerd is gone: the import's own error says so

    def tag(self, store_image, reference):  # pylint: disable=arguments-renamed
        source = next((str(ref) for ref in store_image.references if ref.tag), None)
        if source is None:
            raise StoreError("%s: image %s has no name to tag from" % (self, store_image.id))
        self._forget_reads()
        ContainerdStore.tag(self, source, reference)


class RegistryImageStore(_ModelStore, RegistryStore):
    finds_by_id = False  # a registry is searched by name only

    def images(self, platform=None):  # pylint: disable=unused-argument
        raise StoreError("%s cannot list its images; name them" % self)

    def find(self, selector):
        reference = parse_image_selector(selector).reference
        if reference is None:
            raise StoreError("%s: images in a registry are named by reference, not by ID (%s)" % (self, selector))
        found = [store_image_from_model(image) for image in self.images_of(reference)]
        return PlatformsStoreImage(found) if len(found) > 1 else next(iter(found), None)

    @contextlib.contextmanager
    def open_images(self, selectors, workdir=None):
        chosen = []
        for selector in selectors:
            images = self.images_of(parse_reference(selector))
            if not images:
                raise ImageNotFoundError("%s has no image %s" % (self, selector))
            chosen.extend(images)
        yield chosen

    def held_layers(self):
        return set()

    def load_images(self, images, omit_layers=()):  # pylint: disable=unused-argument
        self.push(images)

    def tag(self, store_image, reference):  # pylint: disable=arguments-renamed
        image = self.image(store_image.references[0])
        self.push([image.with_references([reference])])


class EngineStore(DockerStore):
    """Docker or Podman through the Engine API."""

    platform = None  # which platforms of a multi-platform image an export gives (the engine's own export has them all)

    def find(self, selector):
        document = self.inspect(selector)
        if document is None:
            return None
        image_id = document["Id"] if document["Id"].startswith("sha256:") else "sha256:" + document["Id"]
        by_manifest = not self.stores_config_digest(document) or self.uses_containerd_store()
        return StoreImage(image_id, _references(document.get("RepoTags")), (document.get("RootFS") or {}).get("Layers") or [],
                          None if by_manifest else image_id, document.get("RepoDigests") or [], image_id if by_manifest else None)

    @staticmethod
    def stores_config_digest(document):
        """Graphdriver Docker and Podman use the config digest as ID; Docker's containerd store the manifest's or
        index's digest, and says so with a ``Descriptor``."""
        return "Descriptor" not in document

    holds_blobs = False

    @staticmethod
    def holds(image, layer, held):  # pylint: disable=unused-argument
        """The engine holds layers by DiffID (``RootFS.Layers``), and ``docker load`` skips a layer it has."""
        return layer.diff_id in held

    def held_layers(self):
        return self.layer_ids()

    @contextlib.contextmanager
    def open_images(self, selectors, workdir=None):
        with tempfile.NamedTemporaryFile(dir=workdir, prefix=".airgap-export-", suffix=".tar") as temp:
            self.export(list(selectors), temp)
            temp.flush()
            with open_archive(temp.name, self.platform) as archive:
                yield archive.images

    def load(self, archive_path, images=None, omit_layers=()):  # pylint: disable=arguments-renamed
        with open_archive(archive_path) as archive:
            wanted = _subset(archive.images, images)
            if omit_layers:
                return self.load_images(wanted, list(omit_layers) + absent_layers(wanted))
            return self.load_archive(archive, wanted)

    def load_archive(self, archive, images):
        """Load ``images`` of the open ``archive``. When they are all of it and the engine reads it as it is, its own
        bytes are sent, every file the engine uses checked against its digest on the way; otherwise our archive of
        them is written into the request. Either way a corrupt file fails naming it, and the engine receives a body
        cut short before that file's last chunk, so it loads nothing."""
        regions = None
        if self.readable(images) == images:
            regions = archive.as_is_regions(images, with_manifests=self.uses_containerd_store(), qualified_tags=self.kind == "podman")
        if regions is None:
            return self.load_images(images, absent_layers(images))
        return self.load_as_is(archive, regions)

    def load_as_is(self, archive, regions):
        """Send the open ``archive``'s own bytes, each of its ``regions`` checked as it passes."""
        return DockerStore.load(self, verified_file_chunks(archive.path, archive.source.file_size, regions))

    def load_images(self, images, omit_layers=()):
        """Our archive of ``images``, written straight into the load request (no file)."""
        return DockerStore.load(self, _streamed_archive(self.readable(images_only(images)), omit_layers))

    def readable(self, images):
        """Docker before 23 (API 1.42) cannot read zstd layers: an image with one is sent with a made manifest, its
        layers uncompressed (that Docker knows images by config digest, which stays)."""
        if self.kind != "docker" or version_tuple(self.client.negotiate()) >= ZSTD_API:
            return images
        return [image.without_manifest() if any(layer.compression == ZSTD for layer in image.layers) else image
                for image in images]

    def tag(self, store_image, reference):  # pylint: disable=arguments-renamed
        DockerStore.tag(self, store_image.id, reference)


class PodmanClient(DockerClient):
    engine = "Podman"

    def libpod_request(self, method, path, **kwargs):
        """A request to Podman's own API (``/libpod/...``), answered whatever its status, without a read timeout."""
        self.negotiate()
        return self._send(method, "%s/v%d.%d.0/libpod%s" % ((self.base_url,) + self.libpod_version + (path,)),
                          stream=True, **kwargs)


class PodmanStore(EngineStore):
    kind = "podman"
    client_class = PodmanClient
    LOADS_IN_PLACE = (5, 8)  # POST /libpod/local/images/load: Podman reads a file of its host where it lies

    def load_as_is(self, archive, regions):
        """Podman 5.8 reads the archive where it lies, as ``podman load -i`` does: nothing crosses the socket, and the
        service does not copy the body into a temp file first. The file is checked whole before, so that a corrupt
        one loads nothing (Podman loads image by image and would keep those before it). Podman is named a hard link
        of a random name beside it, so that a service that sees another file system (its socket mounted into a
        container) finds no such file rather than some other one. Where that cannot be done, the bytes are sent."""
        if not self._loads_in_place():
            return EngineStore.load_as_is(self, archive, regions)
        for _chunk in verified_file_chunks(archive.path, archive.source.file_size, regions):
            pass
        link = os.path.join(os.path.dirname(os.path.abspath(archive.path)), ".airgap-load-%s.tar" % secrets.token_hex(8))
        try:
            os.link(archive.path, link)
        except OSError:  # a directory we may not write to, or a file system without hard links
            return EngineStore.load_as_is(self, archive, regions)
        try:
            with self.client.streaming():
                response = self.client.libpod_request("POST", "/local/images/load", params={"path": link})
                message = error_message(response)
        finally:
            os.unlink(link)
        if response.status_code == 200:
            return ["Loaded image: %s" % name for name in response.json().get("Names") or []]
        if response.status_code == 404 or "permission denied" in message:  # the service does not see it, or may not read it
            return EngineStore.load_as_is(self, archive, regions)
        raise StoreError("%s refused the load of %s: %s" % (self.client, archive.path, message))

    def uses_containerd_store(self):
        """Podman keeps its images in containers/storage, never in containerd's (and its ``/info``, which would say
        so, takes 0.2 s: it gathers the whole host's and storage's state)."""
        return False

    def _loads_in_place(self):
        self.client.negotiate()
        return self.client.host.startswith("unix://") and (self.client.libpod_version or (0, 0)) >= self.LOADS_IN_PLACE

    def __init__(self, host=None, **kwargs):
        EngineStore.__init__(self, host or os.environ.get("CONTAINER_HOST") or PODMAN_DEFAULT_HOST, **kwargs)


def images_only(images):
    """What an engine is given: the images, without the artifacts that travel with them (an engine would list an
    SBOM or a signature as an image, or refuse it)."""
    return [image.with_referrers([]) if image.referrers else image for image in images]


def _subset(images, selectors):
    return images if selectors is None else resolve_all(selectors, images, "the archive")


def _streamed_archive(images, omit_layers):
    """Our archive of ``images`` as an iterator of chunks, written by a thread (the HTTP body of a load)."""
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_SIZE)
    failure = []

    def produce():
        with os.fdopen(write_fd, "wb") as sink:
            try:
                write_docker_archive(images, sink, omit_layers)
            except Exception as err:  # pylint: disable=broad-except
                failure.append(err)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    with os.fdopen(read_fd, "rb") as source:
        yield from iter(lambda: source.read(1024 * 1024), b"")
    thread.join()
    if failure:
        raise failure[0]


def open_store(engine="docker", host=None, namespace=None, platform=None, username=None, password=None,
               validate_certs=True, ca_path=None, timeout=60, insecure_http=False, docker_config=None):
    """The store for ``engine`` at ``host`` (socket, URL, registry host or directory)."""
    if engine in ("docker", "podman"):
        store = EngineStore(host, timeout=timeout) if engine == "docker" else PodmanStore(host, timeout=timeout)
        store.platform = platform
        return store
    if engine == "containerd":
        return ContainerdImageStore(host, namespace, platform, timeout=timeout)
    if engine == "registry":
        if not host:
            raise StoreError("engine registry needs the registry's host[:port] (engine_host)")
        return RegistryImageStore(host, username, password, validate_certs, ca_path, insecure_http, timeout, platform,
                                  docker_config)
    if engine == "oci":
        if not host:
            raise StoreError("engine oci needs the layout directory (engine_host)")
        return OCIStore(host, platform=platform)
    raise StoreError("unknown engine %r; use one of %s" % (engine, ", ".join(ENGINES)))
