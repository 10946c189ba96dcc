# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Image references, parsed and normalised as Docker's distribution/reference does.

``busybox`` is ``docker.io/library/busybox:latest``; ``RepoTags`` use the
familiar form (``busybox:latest``). Image IDs (``sha256:<64 hex>``) and
unique short IDs are recognised so that a user can name an image either way.
"""

import re

from .errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
MAX_NAME_LENGTH = 255

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = r"(?:%s(?:\.%s)*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?" % (_DOMAIN_COMPONENT, _DOMAIN_COMPONENT)
_COMPONENT_RE = re.compile(r"^%s$" % _COMPONENT)
_DOMAIN_RE = re.compile(r"^%s$" % _DOMAIN)
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_ID_RE = re.compile(r"^(?:sha256:)?([a-f0-9]{64})$")
_SHORT_ID_RE = re.compile(r"^(?:sha256:)?([a-f0-9]{1,64})$")


class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    __slots__ = ("domain", "path", "tag", "digest")

    def __init__(self, domain, path, tag=None, digest=None):
        self.domain = domain
        self.path = path
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        return "%s/%s" % (self.domain, self.path)

    def __str__(self):
        text = self.name
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def __repr__(self):
        return "Reference(%r)" % str(self)

    def __eq__(self, other):
        return isinstance(other, Reference) and str(self) == str(other)

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash(str(self))

    @property
    def is_tagged(self):
        return self.tag is not None

    @property
    def is_digested(self):
        return self.digest is not None

    def familiar_name(self):
        """``busybox``, ``user/app``, ``localhost:5000/a/b``: the repository as Docker prints it."""
        if self.domain != DEFAULT_DOMAIN:
            return self.name
        if self.path.startswith(OFFICIAL_PREFIX) and "/" not in self.path[len(OFFICIAL_PREFIX):]:
            return self.path[len(OFFICIAL_PREFIX):]
        return self.path

    def familiar(self):
        """The familiar string (``busybox:latest``), as ``RepoTags`` list it."""
        text = self.familiar_name()
        if self.tag:
            text += ":" + self.tag
        if self.digest:
            text += "@" + self.digest
        return text

    def with_tag(self, tag):
        _check_tag(tag, "%s:%s" % (self.name, tag))
        return Reference(self.domain, self.path, tag, None)


def _fail(text, why):
    raise InvalidReferenceError('invalid image reference "%s": %s' % (text, why))


def _check_tag(tag, text):
    if not _TAG_RE.match(tag):
        _fail(text, "tag %r must be 1 to 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'" % tag)


def _split_domain(name):
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain = DEFAULT_DOMAIN if first == LEGACY_DOMAIN else first
        return domain, rest
    return DEFAULT_DOMAIN, name


def parse_reference(text, default_tag="latest"):
    """Parse and normalise ``text``; a reference without tag or digest gets ``default_tag`` (None: none)."""
    if not isinstance(text, str) or not text.strip():
        _fail(text, "it is empty")
    if text != text.strip():
        _fail(text, "it has leading or trailing white space")
    if _ID_RE.match(text) and not text.startswith("sha256:"):
        _fail(text, "cannot specify 64-byte hexadecimal strings as a name; to name an image by ID use sha256:<id>")
    remainder, _sep, digest = text.partition("@")
    if _sep:
        _check_digest(digest, text)
    else:
        digest = None
    name, tag = _split_tag(remainder)
    if tag is not None:
        _check_tag(tag, text)
    domain, path = _split_domain(name)
    _check_domain(domain, text)
    _check_path(path, text)
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        _fail(text, "repository name must not be longer than %d characters" % MAX_NAME_LENGTH)
    if tag is None and digest is None:
        tag = default_tag
    return Reference(domain, path, tag, digest)


def _split_tag(remainder):
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        return remainder[:colon], remainder[colon + 1:]
    return remainder, None


def _check_digest(digest, text):
    if not _DIGEST_RE.match(digest):
        _fail(text, "digest %r is not of the form algorithm:hex" % digest)
    algorithm, encoded = digest.split(":", 1)
    if algorithm == "sha256" and not re.match(r"^[a-f0-9]{64}$", encoded):
        _fail(text, "a sha256 digest needs exactly 64 lowercase hexadecimal characters")


def _check_domain(domain, text):
    if not _DOMAIN_RE.match(domain):
        _fail(text, "registry %r is not a valid host[:port]" % domain)


def _check_path(path, text):
    if not path:
        _fail(text, "repository name is empty")
    if path != path.lower():
        _fail(text, "repository name must be lowercase")
    for component in path.split("/"):
        if not _COMPONENT_RE.match(component):
            _fail(text, "repository name component %r may only hold lowercase letters, digits and separators "
                  "('.', '_', '__', '-') between them" % component)


def is_image_id(text):
    return isinstance(text, str) and bool(_ID_RE.match(text))


def normalise_image_id(text):
    match = _ID_RE.match(text or "")
    if not match:
        raise InvalidReferenceError('invalid image ID "%s": expected sha256:<64 hex> or 64 hex characters' % text)
    return "sha256:" + match.group(1)


def looks_like_short_id(text):
    return isinstance(text, str) and bool(_SHORT_ID_RE.match(text))


class ImageSelector:
    """What a user wrote in an ``images:`` list: a reference, an ID, or a string that may be either."""

    def __init__(self, text, reference=None, id_prefix=None):
        self.text = text
        self.reference = reference
        self.id_prefix = id_prefix

    @property
    def kind(self):
        return "reference" if self.reference is not None else "id"

    def __str__(self):
        return self.text


def parse_image_selector(text):
    """Classify ``text``: ``sha256:<hex>``/64 hex → an ID; short hex → a name that may also be an ID prefix."""
    if is_image_id(text):
        return ImageSelector(text, id_prefix=normalise_image_id(text)[len("sha256:"):])
    if text.startswith("sha256:") and looks_like_short_id(text):
        return ImageSelector(text, id_prefix=text[len("sha256:"):])
    reference = parse_reference(text)
    prefix = text if looks_like_short_id(text) else None
    return ImageSelector(text, reference=reference, id_prefix=prefix)


def resolve_selector(selector, candidates):
    """The one candidate (with ``.id``, ``.references``, optional ``.digests``) the selector names, or None.

    As Docker does: the name first, then the full ID, then a unique ID prefix.
    """
    if isinstance(selector, str):
        selector = parse_image_selector(selector)
    candidates = list(candidates)
    reference = selector.reference
    if reference is not None:
        for candidate in candidates:
            if reference.digest and (reference.digest == candidate.id or reference.digest in getattr(candidate, "digests", ())):
                if reference.tag is None or reference.with_tag(reference.tag) in candidate.references:
                    return candidate
            elif reference in candidate.references:
                return candidate
    if selector.id_prefix is None:
        return None
    matches = [c for c in candidates if c.id.split(":", 1)[-1].startswith(selector.id_prefix)]
    unique = {c.id: c for c in matches}
    if len(unique) > 1:
        raise InvalidReferenceError('short ID "%s" is ambiguous: matches %s; use more characters'
                                    % (selector.text, ", ".join(sorted(i[:19] + "…" for i in unique))))
    return matches[0] if matches else None
