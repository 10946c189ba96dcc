# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references and image IDs, parsed as Docker parses them.

``parse_reference`` accepts what Docker's distribution/reference package
accepts (``ParseNormalizedNamed`` followed by ``TagNameOnly``) and normalises
the same way: ``busybox`` is ``docker.io/library/busybox:latest``, and
``Reference.familiar()`` gives back the short form that ``RepoTags`` list.

``parse_image_selector`` and ``resolve_selector`` find the image a user named
in an ``images:`` list, by name first and then by full or short image ID, as
``docker save`` and ``docker image inspect`` do.
"""

import re

from .errors import ImageNotFoundError, InvalidReferenceError, NotAnImageError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_NAMESPACE = "library/"
DEFAULT_TAG = "latest"
MAX_PATH_LENGTH = 255
MAX_TAG_LENGTH = 128
DIGEST_HEX_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}
ID_ALGORITHM = "sha256:"

# Character classes are spelled out: Python's \w would also accept non-ASCII letters, which Docker refuses.
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(r"(?:%s(?:\.%s)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?" % (_DOMAIN_LABEL, _DOMAIN_LABEL))
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_DIGEST = re.compile(r"([A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*):([0-9a-fA-F]{32,})")
_IMAGE_ID = re.compile(r"(?:sha256:)?([a-f0-9]{64})")
_SHORT_IMAGE_ID = re.compile(r"(?:sha256:)?([a-f0-9]{1,64})")
_BARE_IMAGE_ID = re.compile(r"[a-f0-9]{64}")


class Reference:
    """A normalised image reference: ``domain/path[:tag][@digest]``. Immutable; build one with ``parse_reference``."""

    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain, path, tag=None, digest=None):
        for attribute, value in (("domain", domain), ("path", path), ("tag", tag), ("digest", digest)):
            object.__setattr__(self, attribute, value)

    def __setattr__(self, attribute, value):
        raise AttributeError("Reference is immutable; use with_tag() or parse_reference() for another one")

    def __delattr__(self, attribute):
        raise AttributeError("Reference is immutable")

    @property
    def name(self):
        """The fully qualified repository: ``docker.io/library/busybox``."""
        return "%s/%s" % (self.domain, self.path)

    @property
    def is_tagged(self):
        return self.tag is not None

    @property
    def is_digested(self):
        return self.digest is not None

    def familiar_name(self):
        """The repository as Docker prints it: ``busybox``, ``user/app``, ``localhost:5000/a/b``."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        official_name = self.path[len(OFFICIAL_NAMESPACE):]
        if self.path.startswith(OFFICIAL_NAMESPACE) and "/" not in official_name:
            return official_name
        return self.path

    def familiar(self):
        """The reference as Docker prints it in ``RepoTags``: ``busybox:latest``."""
        return self.familiar_name() + self._suffix()

    def with_tag(self, tag):
        """The same repository (and digest, if any) with ``tag``."""
        _check_tag(tag, "%s:%s" % (self.name, tag))
        return Reference(self.domain, self.path, tag, self.digest)

    def _suffix(self):
        return (":" + self.tag if self.tag is not None else "") + ("@" + self.digest if self.digest is not None else "")

    def __str__(self):
        return self.name + self._suffix()

    def __repr__(self):
        return "Reference(%r)" % str(self)

    def __eq__(self, other):
        if not isinstance(other, Reference):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self):
        return hash(str(self))


def _fail(text, why):
    raise InvalidReferenceError('invalid image reference "%s": %s' % (text, why))


def parse_reference(text, default_tag=DEFAULT_TAG):
    """Parse and normalise ``text``. A reference with neither tag nor digest gets ``default_tag`` (None: no tag)."""
    _check_text(text)
    rest, has_digest, digest = text.partition("@")
    rest, has_tag, tag = _split_tag(rest)
    domain, path = _split_domain(rest)
    _check_domain(domain, text)
    _check_path(path, text)
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_NAMESPACE + path
    if len(path) > MAX_PATH_LENGTH:
        _fail(text, "repository name %s is %d characters long; at most %d are allowed" % (path, len(path), MAX_PATH_LENGTH))
    if has_tag:
        _check_tag(tag, text)
    if has_digest:
        _check_digest(digest, text)
    if not has_tag and not has_digest:
        tag = default_tag
    return Reference(domain, path, tag or None, digest or None)


def _check_text(text):
    if not isinstance(text, str):
        raise InvalidReferenceError("invalid image reference %r: expected a string, got %s" % (text, type(text).__name__))
    if not text:
        _fail(text, "it is empty")
    if text != text.strip():
        _fail(text, "it has leading or trailing white space")
    if "://" in text:
        _fail(text, "an image reference has no URL scheme; drop the %s" % text[:text.index("://") + 3])
    if _BARE_IMAGE_ID.fullmatch(text):
        _fail(text, "cannot specify 64-byte hexadecimal strings as a repository name; to name an image by ID write sha256:%s" % text)


def _split_tag(name_and_tag):
    """``name:tag`` → (name, ":", tag); a colon before the last slash belongs to a registry port."""
    colon = name_and_tag.rfind(":")
    if colon > name_and_tag.rfind("/"):
        return name_and_tag[:colon], ":", name_and_tag[colon + 1:]
    return name_and_tag, "", ""


def _split_domain(name):
    """Docker's rule: the first component is a registry if it has a '.' or ':', is ``localhost``, or has capitals."""
    first, slash, rest = name.partition("/")
    if not slash:
        return DEFAULT_DOMAIN, name
    if first == LEGACY_DEFAULT_DOMAIN:
        return DEFAULT_DOMAIN, rest
    if first == "localhost" or "." in first or ":" in first or first != first.lower():
        return first, rest
    return DEFAULT_DOMAIN, name


def _check_domain(domain, text):
    if not _DOMAIN.fullmatch(domain):
        _fail(text, 'registry "%s" is not a host name, IPv4 address or [IPv6] address with an optional :port' % domain)


def _check_path(path, text):
    if not path:
        _fail(text, "repository name is missing")
    if path != path.lower():
        _fail(text, "repository name must be lowercase")
    for component in path.split("/"):
        if not component:
            _fail(text, "repository name has an empty component (a doubled, leading or trailing '/')")
        if not _PATH_COMPONENT.fullmatch(component):
            _fail(text, 'repository name component "%s" is not valid: use lowercase letters and digits, '
                        "joined by single '.', single or double '_', or any number of '-'" % component)


def _check_tag(tag, text):
    if not tag:
        _fail(text, "tag is empty (remove the ':' or name a tag)")
    if len(tag) > MAX_TAG_LENGTH:
        _fail(text, "tag is %d characters long; at most %d are allowed" % (len(tag), MAX_TAG_LENGTH))
    if not _TAG.fullmatch(tag):
        _fail(text, "tag \"%s\" is not valid: use letters, digits, '_', '.' and '-', not starting with '.' or '-'" % tag)


def _check_digest(digest, text):
    match = _DIGEST.fullmatch(digest)
    if not match:
        _fail(text, 'digest "%s" is not of the form algorithm:hex, e.g. sha256: and 64 hexadecimal digits' % digest)
    algorithm, encoded = match.groups()
    expected_length = DIGEST_HEX_LENGTHS.get(algorithm)
    if expected_length is None:
        _fail(text, 'digest algorithm "%s" is not supported; use %s' % (algorithm, ", ".join(sorted(DIGEST_HEX_LENGTHS))))
    if len(encoded) != expected_length or encoded != encoded.lower():
        _fail(text, "a %s digest has exactly %d lowercase hexadecimal digits; this one has %d%s"
              % (algorithm, expected_length, len(encoded), "" if encoded == encoded.lower() else " and capitals"))


# Image IDs ---------------------------------------------------------------------------------------------

def is_image_id(text):
    """True for a full image ID: ``sha256:<64 hex>`` or the 64 hex digits alone."""
    return isinstance(text, str) and _IMAGE_ID.fullmatch(text) is not None


def normalise_image_id(text):
    """``sha256:<64 hex>`` for a full image ID written either way; InvalidReferenceError otherwise."""
    match = _IMAGE_ID.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidReferenceError('invalid image ID "%s": expected sha256: and 64 lowercase hexadecimal digits, or the 64 digits alone' % text)
    return ID_ALGORITHM + match.group(1)


def looks_like_short_id(text):
    """True for 1 to 64 lowercase hex digits, optionally after ``sha256:``: what Docker accepts as an ID prefix."""
    return isinstance(text, str) and _SHORT_IMAGE_ID.fullmatch(text) is not None


def _id_hex(image_id):
    return image_id.partition(":")[2] or image_id


# Selecting images --------------------------------------------------------------------------------------

class ImageSelector:
    """One entry of an ``images:`` list: a reference, an image ID or ID prefix, or a string that may be both.

    ``kind`` is ``"reference"`` when the text parses as a reference (``reference`` is then set) and ``"id"``
    otherwise. ``image_id`` is the normalised full ID when the text is one; ``id_prefix`` holds the hex
    digits to try as an ID prefix, also for a reference such as ``abc123`` that could be a short ID.
    """

    __slots__ = ("text", "reference", "image_id", "id_prefix")

    def __init__(self, text, reference=None, image_id=None, id_prefix=None):
        self.text = text
        self.reference = reference
        self.image_id = image_id
        self.id_prefix = id_prefix

    @property
    def kind(self):
        return "reference" if self.reference is not None else "id"

    def __str__(self):
        return self.text

    def __repr__(self):
        return "ImageSelector(%r, kind=%r)" % (self.text, self.kind)


def parse_image_selector(text):
    """Classify ``text`` as Docker does: a full ID, an ID prefix, a reference, or a reference that may be an ID prefix."""
    if is_image_id(text):
        image_id = normalise_image_id(text)
        return ImageSelector(text, image_id=image_id, id_prefix=_id_hex(image_id))
    if looks_like_short_id(text) and text.startswith(ID_ALGORITHM):
        return ImageSelector(text, id_prefix=text[len(ID_ALGORITHM):])
    reference = parse_reference(text)
    return ImageSelector(text, reference=reference, id_prefix=text if looks_like_short_id(text) else None)


def resolve_selector(selector, candidates):
    """The candidate ``selector`` names, or None.

    Candidates have ``.id`` (``sha256:…``), ``.references`` (Reference list) and optionally ``.digests``.
    As Docker does, the name is tried first, then the full ID, then a unique ID prefix; a prefix that
    matches several images raises InvalidReferenceError.
    """
    if isinstance(selector, str):
        selector = parse_image_selector(selector)
    candidates = list(candidates)
    if selector.reference is not None:
        found = _find_by_reference(selector.reference, candidates)
        if found is not None:
            return found
    if selector.image_id is not None:
        found = next((candidate for candidate in candidates if candidate.id == selector.image_id), None)
        if found is not None:
            return found
    if selector.id_prefix is not None:
        return _find_by_id_prefix(selector, candidates)
    return None


def _find_by_reference(reference, candidates):
    """A digest names content, so ``name[:tag]@digest`` matches by digest alone, as Docker does."""
    for candidate in candidates:
        if reference in candidate.references:
            return candidate
        if reference.digest is not None:
            if reference.digest == candidate.id or reference.digest in (getattr(candidate, "digests", None) or ()):
                return candidate
    return None


def _find_by_id_prefix(selector, candidates):
    by_id = {}
    for candidate in candidates:
        if _id_hex(candidate.id).startswith(selector.id_prefix):
            by_id.setdefault(candidate.id, candidate)
    if len(by_id) > 1:
        raise InvalidReferenceError('short ID "%s" is ambiguous: matches %s; use more characters'
                                    % (selector.text, ", ".join(_distinguishable(sorted(by_id)))))
    return next(iter(by_id.values()), None)


def _distinguishable(image_ids):
    """The IDs shortened to the fewest hex digits (at least 12, as Docker shows) that still tell them apart."""
    for digits in range(12, 64):
        shortened = [ID_ALGORITHM + _id_hex(image_id)[:digits] + "…" for image_id in image_ids]
        if len(set(shortened)) == len(shortened):
            return shortened
    return list(image_ids)


def resolve_all(selectors, candidates, where, artifacts=()):
    """The candidate each selector names, in order; ImageNotFoundError naming ``where`` for one that names none,
    NotAnImageError for one that names one of ``artifacts`` (what a layout holds beside images)."""
    candidates = list(candidates)
    chosen = []
    for selector in selectors:
        found = resolve_selector(selector, candidates)
        if found is None:
            _refuse_artifact(selector, artifacts, where)
            raise ImageNotFoundError("%s has no image %s" % (where, selector))
        chosen.append(found)
    return chosen


def _refuse_artifact(selector, artifacts, where):
    artifact = resolve_selector(selector, artifacts) if artifacts else None
    if artifact is not None:
        raise NotAnImageError("%s: %s is an artifact (%s, manifest %s), not an image; only images can be loaded or saved"
                              % (where, selector, artifact.artifact_type, artifact.id))
