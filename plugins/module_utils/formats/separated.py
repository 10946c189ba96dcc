# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Separated images, compatible with isula-build: base, lib and app tarballs plus a ``manifest``.

An application image is cut where it stops sharing layers with a base image
(and a lib image that extends the base). Each tarball is one of our
archives: the base tarball is the base image; the lib tarball the lib image
without the base's layers; the app tarball the app image (config,
``manifest.json`` listing every layer, ``repositories``) without the lib's
(or base's) layers. ``manifest`` records, per ``name:tag``, isula-build's
fields and, under ``airgap``, what isula-build lacks.
"""

import contextlib
import json
import os
from concurrent.futures import ThreadPoolExecutor

from .archive import minimum_archive_size, open_archive, save_archive
from ..atomic import NoSpaceError, atomic_file, check_free_space, no_space_error
from ..compression import NONE
from ..digest import file_sha256, remember_file_sha256, remembered_file_sha256
from ..errors import ArchiveError, ImageError, ImageNotFoundError
from ..reference import parse_image_selector, parse_reference, resolve_selector
from .safetar import MAX_JSON_SIZE

MANIFEST = "manifest"
FORMAT_VERSION = 1
SUFFIXES = {"gzip": ".tar.gz", "zstd": ".tar.zst", NONE: ".tar"}


class SeparationError(ImageError):
    """The images cannot be cut as asked."""


def check_prefix(lower, upper, lower_name, upper_name):
    """``lower``'s layers must be the first layers of ``upper`` (and fewer); else name the first difference."""
    for index, diff_id in enumerate(lower.diff_ids):
        if index >= len(upper.diff_ids) or upper.diff_ids[index] != diff_id:
            found = upper.diff_ids[index] if index < len(upper.diff_ids) else "no layer"
            raise SeparationError("%s is not built on %s: layer %d of %s is %s, %s has %s there"
                                  % (upper_name, lower_name, index, lower_name, diff_id, upper_name, found))
    if len(lower.diff_ids) >= len(upper.diff_ids):
        raise SeparationError("%s has %d layers, %s %d: the %s must have fewer layers than the image built on it"
                              % (lower_name, len(lower.diff_ids), upper_name, len(upper.diff_ids), lower_name))


def split(app, app_name, base, base_name, lib=None, lib_name=None):
    """(base layers, lib layers, app layers) of ``app``, checking that base (and lib) are prefixes."""
    if lib is not None:
        check_prefix(base, lib, "base " + base_name, "lib " + lib_name)
        check_prefix(lib, app, "lib " + lib_name, app_name)
        cut_base, cut_lib = len(base.diff_ids), len(lib.diff_ids)
    else:
        check_prefix(base, app, "base " + base_name, app_name)
        cut_base = cut_lib = len(base.diff_ids)
    return app.diff_ids[:cut_base], app.diff_ids[cut_base:cut_lib], app.diff_ids[cut_lib:]


def key_of(image):
    """isula-build keys an app by its first tag, ``name:tag``."""
    if not image.repo_tags:
        raise SeparationError("%s has no tag; separated images are keyed by name:tag" % _identity(image))
    return image.repo_tags[0]


def _identity(image):
    """An image's config digest, or where the store gives none (an ImageMeta of Docker's containerd store) its digest."""
    return image.id or image.digests[0]


def file_stem(tag):
    """``registry/team/app:1.0`` → ``app_1.0`` (the last path element and the tag)."""
    reference = parse_reference(tag)
    return "%s_%s" % (reference.path.split("/")[-1], reference.tag)


def load_rename(rename):
    """The rename map from a list of ``{name, rename}`` or a JSON file of one (isula-build's format)."""
    if not rename:
        return {}
    if isinstance(rename, str):
        try:
            with open(rename) as handle:
                rename = json.load(handle)
        except (OSError, ValueError, RecursionError) as err:
            raise SeparationError("rename file %s: %s" % (rename, err)) from None
    if not isinstance(rename, list):
        raise SeparationError("the rename map must be a list of {name, rename} objects, not %r" % (rename,))
    mapping = {}
    for entry in rename:
        if not isinstance(entry, dict) or not entry.get("name") or not entry.get("rename"):
            raise SeparationError("rename entries need 'name' and 'rename': %r" % (entry,))
        for value in (entry["name"], entry["rename"]):
            if not _plain_file_name(value):
                raise SeparationError("rename %r: a file name must be a string without '/' or NUL, and not '.' or '..'" % (value,))
        mapping[entry["name"]] = entry["rename"]
    return mapping


def _plain_file_name(name):
    """A name that stays in its directory: a non-empty string, no '/' or NUL, not '.' or '..'."""
    return isinstance(name, str) and bool(name) and "/" not in name and "\x00" not in name and name not in (".", "..")


class Part:
    """One tarball to write: which image, which layers it leaves out, under which name."""

    def __init__(self, kind, image, omit, name):
        self.kind = kind
        self.image = image
        self.omit = list(omit)
        self.name = name
        self.sha256 = None
        self.size = None
        self.reused = False


def plan(apps, base, lib, compression, rename):
    """The parts to write and the manifest entries, apps in sorted order (shared parts named after the first)."""
    suffix = SUFFIXES[compression]
    rename = load_rename(rename)
    base_name = base.repo_tags[0] if base.repo_tags else _identity(base)
    lib_name = (lib.repo_tags[0] if lib.repo_tags else _identity(lib)) if lib is not None else None
    parts, entries = {}, {}
    for app in sorted(apps, key=key_of):
        key = key_of(app)
        base_ids, lib_ids, app_ids = split(app, key, base, base_name, lib, lib_name)
        stem = file_stem(key)
        shared_base = parts.setdefault("base", Part("base", base, (), rename.get(stem + "_base_image" + suffix, stem + "_base_image" + suffix)))
        shared_lib = None
        if lib is not None:
            name = stem + "_lib_image" + suffix
            shared_lib = parts.setdefault("lib", Part("lib", lib, base_ids, rename.get(name, name)))
        name = stem + "_app_image" + suffix
        app_part = parts.setdefault(key, Part("app", app, base_ids + lib_ids, rename.get(name, name)))
        entries[key] = (app_part, shared_lib, shared_base, (base_ids, lib_ids, app_ids))
    names = [part.name for part in parts.values()]
    if len(set(names)) != len(names) or MANIFEST in names:
        raise SeparationError("two tarballs would have the same name (%s); fix the rename map" % ", ".join(sorted(names)))
    return list(parts.values()), entries


def manifest_for(entries, base, lib, compression):
    manifest = {}
    for key, (app_part, lib_part, base_part, (base_ids, lib_ids, app_ids)) in sorted(entries.items()):
        hexes = [[d.split(":", 1)[1] for d in ids] for ids in (base_ids, lib_ids, app_ids)]
        manifest[key] = {
            "app": app_part.name, "appHash": app_part.sha256, "appLayers": hexes[2],
            "lib": lib_part.name if lib_part else "", "libHash": lib_part.sha256 if lib_part else "",
            "libImageName": lib.repo_tags[0] if lib is not None and lib.repo_tags else "",
            "libLayers": hexes[1],
            "base": base_part.name, "baseHash": base_part.sha256,
            "baseImageName": base.repo_tags[0] if base.repo_tags else "",
            "baseLayer": hexes[0][0] if len(hexes[0]) == 1 else hexes[0],
            "airgap": {
                "formatVersion": FORMAT_VERSION, "imageId": app_part.image.id, "diffIds": list(app_part.image.diff_ids),
                "baseImageId": base.id, "libImageId": lib.id if lib is not None else "", "compression": compression,
                "digests": list(app_part.image.digests), "baseDigests": list(base.digests),
                "libDigests": list(lib.digests) if lib is not None else [],
                "sizes": {part.kind: part.size for part in (app_part, lib_part, base_part) if part is not None},
            },
        }
    return manifest


def read_manifest(dest):
    """``dest/manifest`` as a dict, or None when there is none."""
    path = os.path.join(dest, MANIFEST)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ArchiveError("%s is not a regular file" % path)
    if os.path.isfile(path) and os.path.getsize(path) > MAX_JSON_SIZE:
        raise ArchiveError("%s is %d bytes, more than the %d allowed for metadata" % (path, os.path.getsize(path), MAX_JSON_SIZE))
    try:
        with open(path) as handle:
            manifest = json.load(handle)
    except OSError:
        return None
    except (ValueError, RecursionError) as err:
        raise ArchiveError("%s is not valid JSON: %s" % (path, err)) from None
    if not isinstance(manifest, dict):
        raise ArchiveError("%s is not a JSON object keyed by name:tag" % path)
    return manifest


def unchanged_reason(dest, parts, entries, base, lib, compression):
    """None when ``dest/manifest`` describes exactly these images and every file still hashes to its sum; else why not.
    A file's hash is remembered on it (``remembered_file_sha256``), so a re-run reads a part only when it changed."""
    current = read_manifest(dest)
    if current is None:
        return "%s has no manifest" % dest
    expected = manifest_for(entries, base, lib, compression)
    for key, entry in expected.items():
        held = current.get(key)
        if not isinstance(held, dict):
            return "%s is not in the manifest" % key
        for field in ("app", "lib", "base", "appLayers", "libLayers", "baseLayer", "libImageName", "baseImageName"):
            if held.get(field) != entry[field]:
                return "%s: %s differs (%s, wanted %s)" % (key, field, held.get(field), entry[field])
        airgap = held.get("airgap") or {}
        for field in ("diffIds", "compression"):
            if airgap.get(field) != entry["airgap"][field]:
                return "%s: %s differs" % (key, field)
        app_part, lib_part = entries[key][0], entries[key][1]
        for image, id_field, digests_field in ((app_part.image, "imageId", "digests"), (base, "baseImageId", "baseDigests"),
                                               (lib_part.image if lib_part else None, "libImageId", "libDigests")):
            if not _is_recorded(image, airgap.get(id_field), airgap.get(digests_field)):
                return "%s: %s differs" % (key, id_field)
    if set(current) != set(expected):
        return "the manifest also lists %s" % ", ".join(sorted(set(current) - set(expected)))
    for part in parts:
        path = os.path.join(dest, part.name)
        recorded = _recorded_hash(current, part)
        if not os.path.isfile(path) or remembered_file_sha256(path) != recorded:
            return "%s is missing or does not match its recorded sha256" % part.name
        part.sha256, part.size, part.reused = recorded, os.path.getsize(path), True
    return None


def _is_recorded(image, recorded_id, recorded_digests):
    """Whether ``image`` (None: no lib) is the one the manifest records: by config digest where the source gives one;
    else (Docker's containerd store knows an image only by its manifest's or index's digest) by one of the digests the
    image was known by when its part was written."""
    if image is None:
        return recorded_id == ""
    if image.id is not None:
        return image.id == recorded_id
    return isinstance(recorded_digests, list) and any(digest in recorded_digests for digest in image.digests)


def _recorded_hash(manifest, part):
    for entry in manifest.values():
        for field in ("app", "lib", "base"):
            if entry.get(field) == part.name:
                return entry.get(field + "Hash")
    return None


def write(dest, parts, entries, base, lib, compression, level=None):
    """Write every part (two at a time: compression runs outside the GIL), then the manifest last; returns it.

    Parts go to temporary names and replace the old files only when all are
    whole, so a failure (a full disk too) leaves ``dest`` as it was.
    """
    os.makedirs(dest, exist_ok=True)
    needed = _total(minimum_archive_size([part.image], part.omit) for part in parts) if compression == NONE else None
    check_free_space(dest, needed)
    pending = {part.name: os.path.join(dest, ".%s.pending" % part.name) for part in parts}

    def write_part(part):
        result = save_archive([part.image], pending[part.name], compression=compression, level=level, omit_layers=part.omit)
        part.sha256, part.size = result.sha256.split(":", 1)[1], result.size

    try:
        _run_all(write_part, parts)
    except BaseException as err:
        for path in pending.values():
            if os.path.exists(path):
                os.unlink(path)
        if isinstance(err, NoSpaceError):
            raise no_space_error(dest, needed) from None  # name dest, not a part's temporary name
        raise
    for part in parts:  # every part is whole: now they replace the old ones, the manifest last
        final = os.path.join(dest, part.name)
        os.replace(pending[part.name], final)
        remember_file_sha256(final, part.sha256)
    manifest = manifest_for(entries, base, lib, compression)
    with atomic_file(os.path.join(dest, MANIFEST)) as out:
        out.write(json.dumps(manifest, indent=2, sort_keys=True).encode("utf-8") + b"\n")
    return manifest


def _run_all(function, items):
    """``function`` on every item, two at a time; the first failure cancels what has not started and is raised."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(function, item) for item in items]
        try:
            for future in futures:
                future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _total(sizes):
    sizes = list(sizes)
    return None if None in sizes else sum(sizes)


# Loading ------------------------------------------------------------------------------------------------

def find_entry(manifest, app, dest):
    if app in manifest:
        return app, _entry_object(manifest[app], app, dest)
    wanted = parse_reference(app)
    for key, entry in manifest.items():
        try:
            if parse_reference(key) == wanted:
                return key, _entry_object(entry, key, dest)
        except ImageError:
            continue
    raise ArchiveError("%s/manifest has no image %s (it has %s)" % (dest, app, ", ".join(sorted(manifest)) or "none"))


def _entry_object(entry, key, dest):
    if not isinstance(entry, dict):
        raise ArchiveError("%s/manifest: entry %s is not a JSON object" % (dest, key))
    return entry


def entry_files(dest, entry, base=None, lib=None):
    """{kind: path} of the tarballs an entry names (base/lib overridable), refusing names that leave ``dest``."""
    if not isinstance(entry, dict):
        raise ArchiveError("%s/manifest: an entry is not a JSON object: %r" % (dest, entry))
    files = {}
    for kind, override in (("app", None), ("lib", lib), ("base", base)):
        name = entry.get(kind) or ""
        if override:
            files[kind] = override
        elif name:
            if not _plain_file_name(name):
                raise ArchiveError("%s/manifest: %s file name %r would leave the directory (or is not a file name)" % (dest, kind, name))
            files[kind] = os.path.join(dest, name)
    return files


def verify_files(files, entry):
    for kind, path in files.items():
        if not os.path.lexists(path):
            continue
        if not os.path.isfile(path):
            raise ArchiveError("%s (%s tarball) is not a regular file; nothing was loaded" % (path, kind))
        actual = file_sha256(path)
        if actual != entry.get(kind + "Hash"):
            raise ArchiveError("%s (%s tarball) has sha256 %s, the manifest records %s: corrupt or tampered; nothing was loaded"
                               % (path, kind, actual, entry.get(kind + "Hash")))


class SeparatedImage:
    """The app image re-assembled from its tarballs; layers come from whichever tarball holds them."""

    def __init__(self, files, key):
        self.archives = []
        self.key = key
        try:
            for kind in ("app", "lib", "base"):
                if kind in files and os.path.exists(files[kind]):
                    self.archives.append(open_archive(files[kind]))
            if not self.archives or "app" not in files or not os.path.exists(files["app"]):
                raise ArchiveError("the app tarball %s is missing" % files.get("app"))
            app = resolve_selector(parse_image_selector(key), self.archives[0].images) or self.archives[0].images[0]
            layers = [self._layer(layer) for layer in app.layers]
            self.image = app.with_layers(layers)
            if any(layer.stored_digest != wanted.stored_digest for layer, wanted in zip(layers, app.layers)):
                self.image = self.image.without_manifest()  # a shared part holds another blob of the same layer
        except BaseException:
            self.close()
            raise

    def _layer(self, layer):
        """Where the layer is: the same blob in any tarball, else another blob of the same DiffID."""
        candidates = [candidate for archive in self.archives for image in archive.images for candidate in image.layers
                      if candidate.diff_id == layer.diff_id and candidate.available]
        same_blob = [candidate for candidate in candidates if candidate.stored_digest == layer.stored_digest]
        return (same_blob or candidates or [layer])[0]

    def close(self):
        for archive in self.archives:
            archive.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@contextlib.contextmanager
def open_app(directory, app, base=None, lib=None, verify=True):
    """The model image of ``app`` re-assembled from the separated tarballs in ``directory`` (its manifest says which);
    ``verify`` checks each tarball against the sha256 the manifest records first."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise ImageNotFoundError("%s has no manifest: not a directory of separated images" % directory)
    key, entry = find_entry(manifest, app, directory)
    files = entry_files(directory, entry, base, lib)
    if verify:
        verify_files(files, entry)
    with SeparatedImage(files, key) as image:
        yield image.image


class ImageMeta:
    """What planning needs of an image, from a store's metadata alone (no layer is read): its config digest (``id``;
    None where the store does not give it) and the manifest or index digests the store knows it by."""

    def __init__(self, config_digest, digests, diff_ids, repo_tags):
        self.id = config_digest
        self.digests = list(digests)
        self.diff_ids = list(diff_ids)
        self.repo_tags = list(repo_tags)


def selected_tags(selector, available):
    """The tag a selector names (``app:1``), else the image's first tag."""
    reference = parse_image_selector(selector).reference
    if reference is not None and reference.tag and not reference.digest:
        return [reference.familiar()]
    return sorted(available)[:1]


def naive_bytes(apps):
    """Uncompressed bytes a save of each app on its own would write (None when a size is unknown)."""
    sizes = [app.size for app in apps]
    return None if None in sizes else sum(sizes)
