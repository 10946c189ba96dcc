# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference parsing, image IDs and image selection.

The accepted and refused inputs below were checked against Docker's
distribution/reference (``ParseNormalizedNamed`` + ``TagNameOnly``,
``FamiliarString``); the one place we refuse what it accepts has its own test.
"""

import pytest

from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError, InvalidReferenceError
from ansible_collections.airgap.images.plugins.module_utils.reference import (
    ImageSelector, Reference, is_image_id, looks_like_short_id, normalise_image_id, parse_image_selector, parse_reference,
    resolve_selector)

DIGEST = "sha256:" + "0123456789abcdef" * 4
ID_A = "sha256:" + "a1" * 32
ID_B = "sha256:" + "a2" * 32
ID_C = "sha256:" + "c3" * 32


@pytest.mark.parametrize("text, normalised, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/library/busybox:latest", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("index.docker.io/user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("myuser/app:1", "docker.io/myuser/app:1", "myuser/app:1"),
    ("docker.io/library/a/b:1", "docker.io/library/a/b:1", "library/a/b:1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("localhost", "docker.io/library/localhost:latest", "localhost:latest"),
    ("localhost:5000", "docker.io/library/localhost:5000", "localhost:5000"),
    ("example.com/x", "example.com/x:latest", "example.com/x:latest"),
    ("example:5000/x", "example:5000/x:latest", "example:5000/x:latest"),
    ("quay.io/x:1", "quay.io/x:1", "quay.io/x:1"),
    ("quay.io/org/repo:v1.2.3", "quay.io/org/repo:v1.2.3", "quay.io/org/repo:v1.2.3"),
    ("registry.example.com:443/team/app", "registry.example.com:443/team/app:latest", "registry.example.com:443/team/app:latest"),
    ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
    ("[::1]:5000/x", "[::1]:5000/x:latest", "[::1]:5000/x:latest"),
    ("[fc00:1:2:3:4:5:6:7]/library/debian", "[fc00:1:2:3:4:5:6:7]/library/debian:latest", "[fc00:1:2:3:4:5:6:7]/library/debian:latest"),
    ("Docker/docker", "Docker/docker:latest", "Docker/docker:latest"),
    ("Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com/app:latest"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST, "busybox@" + DIGEST),
    ("busybox:1@" + DIGEST, "docker.io/library/busybox:1@" + DIGEST, "busybox:1@" + DIGEST),
    ("quay.io/x/y@" + DIGEST, "quay.io/x/y@" + DIGEST, "quay.io/x/y@" + DIGEST),
    ("app@sha512:" + "f" * 128, "docker.io/library/app@sha512:" + "f" * 128, "app@sha512:" + "f" * 128),
    ("a_b/c__d/e-f.g:T_1", "docker.io/a_b/c__d/e-f.g:T_1", "a_b/c__d/e-f.g:T_1"),
    ("a---b", "docker.io/library/a---b:latest", "a---b:latest"),
    ("abc123", "docker.io/library/abc123:latest", "abc123:latest"),
    ("docker.io/" + "a1" * 32, "docker.io/library/" + "a1" * 32 + ":latest", "a1" * 32 + ":latest"),
    ("sha256:" + "a1" * 32, "docker.io/library/sha256:" + "a1" * 32, "sha256:" + "a1" * 32),
    ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128, "x:" + "t" * 128),
    ("my-registry.local:5000/ns/sub/app:1.0-rc1", "my-registry.local:5000/ns/sub/app:1.0-rc1", "my-registry.local:5000/ns/sub/app:1.0-rc1"),
])
def test_normalised_and_familiar_forms(text, normalised, familiar):
    reference = parse_reference(text)
    assert str(reference) == normalised
    assert reference.familiar() == familiar
    assert parse_reference(normalised) == reference
    assert parse_reference(familiar) == reference


@pytest.mark.parametrize("text, domain, path, tag, digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("localhost:5000/a/b:t", "localhost:5000", "a/b", "t", None),
    ("quay.io/x/y@" + DIGEST, "quay.io", "x/y", None, DIGEST),
    ("user/app:2@" + DIGEST, "docker.io", "user/app", "2", DIGEST),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
])
def test_parts(text, domain, path, tag, digest):
    reference = parse_reference(text)
    assert (reference.domain, reference.path, reference.tag, reference.digest) == (domain, path, tag, digest)
    assert reference.name == domain + "/" + path
    assert reference.is_tagged == (tag is not None)
    assert reference.is_digested == (digest is not None)


@pytest.mark.parametrize("text, familiar_name", [
    ("busybox:1", "busybox"),
    ("user/app", "user/app"),
    ("docker.io/library/a/b", "library/a/b"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b"),
    ("quay.io/x@" + DIGEST, "quay.io/x"),
])
def test_familiar_name_has_no_tag_or_digest(text, familiar_name):
    assert parse_reference(text).familiar_name() == familiar_name


def test_default_tag():
    assert parse_reference("busybox", default_tag=None).tag is None
    assert str(parse_reference("busybox", default_tag=None)) == "docker.io/library/busybox"
    assert parse_reference("busybox", default_tag="stable").tag == "stable"
    assert parse_reference("busybox:1", default_tag=None).tag == "1"
    assert parse_reference("busybox@" + DIGEST).tag is None


def test_with_tag_returns_a_new_reference():
    original = parse_reference("localhost:5000/a/b:t")
    retagged = original.with_tag("u")
    assert str(retagged) == "localhost:5000/a/b:u"
    assert str(original) == "localhost:5000/a/b:t"
    assert str(parse_reference("a@" + DIGEST).with_tag("1")) == "docker.io/library/a:1@" + DIGEST
    with pytest.raises(InvalidReferenceError, match="tag"):
        original.with_tag("-bad")
    with pytest.raises(InvalidReferenceError, match="tag"):
        original.with_tag("ok\n")


def test_reference_is_immutable():
    reference = parse_reference("busybox")
    with pytest.raises(AttributeError):
        reference.tag = "other"
    with pytest.raises(AttributeError):
        del reference.domain
    assert reference.tag == "latest"


def test_equality_and_hashing_follow_the_normalised_string():
    same = [parse_reference("busybox"), parse_reference("docker.io/library/busybox:latest"), parse_reference("index.docker.io/busybox")]
    assert len(set(same)) == 1
    assert same[0] == same[1] and (same[0] != same[1]) is False
    assert parse_reference("busybox:1") != parse_reference("busybox:2")
    assert parse_reference("busybox") != "docker.io/library/busybox:latest"
    assert Reference("docker.io", "library/busybox", "latest") == same[0]
    assert repr(same[0]) == "Reference('docker.io/library/busybox:latest')"


@pytest.mark.parametrize("text, fragment", [
    ("", "it is empty"),
    (" busybox", "white space"),
    ("busybox\n", "white space"),
    ("Busybox", "repository name must be lowercase"),
    ("user/App:1", "repository name must be lowercase"),
    ("docker.io/library/Busybox", "repository name must be lowercase"),
    ("a1" * 32, "cannot specify 64-byte hexadecimal strings"),
    ("busybox:", "tag is empty"),
    ("busybox:.hidden", 'tag ".hidden" is not valid'),
    ("busybox:-x", 'tag "-x" is not valid'),
    ("busybox:t\u00e6g", 'tag "t\u00e6g" is not valid'),
    ("busybox:" + "t" * 129, "tag is 129 characters long; at most 128"),
    ("busybox@sha256:abc", 'digest "sha256:abc" is not of the form algorithm:hex'),
    ("busybox@", 'digest "" is not of the form'),
    ("busybox@sha256:" + "a" * 63, "a sha256 digest has exactly 64 lowercase hexadecimal digits; this one has 63"),
    ("busybox@sha256:" + "AB" * 32, "this one has 64 and capitals"),
    ("busybox@md5:" + "a" * 32, 'digest algorithm "md5" is not supported; use sha256, sha384, sha512'),
    ("busybox@SHA256:" + "a" * 64, 'digest algorithm "SHA256" is not supported'),
    ("a//b", "empty component"),
    ("docker/", "repository name has an empty component"),
    ("localhost:5000/", "repository name is missing"),
    ("@" + DIGEST, "repository name is missing"),
    ("-a", 'component "-a" is not valid'),
    ("a_", 'component "a_" is not valid'),
    ("a/b!/c", 'component "b!" is not valid'),
    ("docker/dock..er", 'component "dock..er" is not valid'),
    ("dock..er/docker", 'registry "dock..er" is not a host name'),
    ("____/____", 'component "____" is not valid'),
    ("busybox:1:2", 'component "busybox:1" is not valid'),
    ("exa_mple.com:5000/x", 'registry "exa_mple.com:5000" is not a host name'),
    ("example.com:port/x", 'registry "example.com:port" is not a host name'),
    ("-docker.io/docker/docker", 'registry "-docker.io" is not a host name'),
    ("fc00::1:5000/debian", 'registry "fc00::1:5000" is not a host name'),
    ("[fe80::1%eth0]:5000/debian", "is not a host name"),
    ("[2001:db8:3:4::192.0.2.33]:5000/debian", "is not a host name"),
    ("[fc00::1]:5000", 'component "[fc00::1]" is not valid'),
    ("https://github.com/docker/docker", 'no URL scheme; drop the https://'),
    ("x" * 248, "repository name library/%s is 256 characters long; at most 255" % ("x" * 248)),
    ("quay.io/" + "y" * 256, "is 256 characters long; at most 255"),
])
def test_invalid_references_say_what_is_wrong(text, fragment):
    with pytest.raises(InvalidReferenceError) as err:
        parse_reference(text)
    message = str(err.value)
    assert message.startswith('invalid image reference "%s": ' % text)
    assert fragment in message


def test_length_limit_leaves_out_the_registry():
    reference = parse_reference("quay.io/" + "y" * 255)
    assert len(reference.path) == 255 and len(reference.name) > 255


def test_registry_with_underscore_is_refused_where_docker_takes_it_as_a_path():
    # distribution/reference accepts "exa_mple.com/x" as a name with no registry at all; we want a registry.
    with pytest.raises(InvalidReferenceError, match='registry "exa_mple.com"'):
        parse_reference("exa_mple.com/x")


def test_errors_belong_to_the_collection_hierarchy():
    with pytest.raises(ImageError):
        parse_reference("Busybox")
    with pytest.raises(InvalidReferenceError, match="expected a string, got int"):
        parse_reference(42)


# Image IDs ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    (ID_A, True),
    (ID_A[len("sha256:"):], True),
    ("sha256:abc", False),
    ("busybox", False),
    ("SHA256:" + "a1" * 32, False),
    ("sha256:" + "A1" * 32, False),
    ("sha512:" + "a1" * 32, False),
    (ID_A + "\n", False),
    (None, False),
])
def test_is_image_id(text, expected):
    assert is_image_id(text) is expected


def test_normalise_image_id():
    assert normalise_image_id(ID_A[len("sha256:"):]) == ID_A
    assert normalise_image_id(ID_A) == ID_A
    for bad in ("nope", "sha256:a1", "", None):
        with pytest.raises(InvalidReferenceError, match="invalid image ID"):
            normalise_image_id(bad)


@pytest.mark.parametrize("text, expected", [
    ("a", True),
    ("a1a1", True),
    ("sha256:a1", True),
    (ID_A, True),
    (ID_A[len("sha256:"):], True),
    ("sha256:", False),
    ("", False),
    ("A1", False),
    ("busybox", False),
    ("a" * 65, False),
    ("g1", False),
])
def test_looks_like_short_id(text, expected):
    assert looks_like_short_id(text) is expected


# Selectors ---------------------------------------------------------------------------------------------

def test_selector_for_a_full_id():
    for text in (ID_A, ID_A[len("sha256:"):]):
        selector = parse_image_selector(text)
        assert selector.kind == "id"
        assert selector.image_id == ID_A
        assert selector.reference is None


def test_selector_for_a_short_id():
    selector = parse_image_selector("sha256:a1a1")
    assert (selector.kind, selector.image_id, selector.id_prefix, selector.reference) == ("id", None, "a1a1", None)


def test_selector_that_may_be_a_name_or_a_short_id_keeps_both():
    selector = parse_image_selector("abc123")
    assert selector.kind == "reference"
    assert str(selector.reference) == "docker.io/library/abc123:latest"
    assert selector.id_prefix == "abc123"
    assert selector.image_id is None


def test_selector_for_a_name():
    selector = parse_image_selector("busybox")
    assert selector.kind == "reference"
    assert selector.reference == parse_reference("docker.io/library/busybox:latest")
    assert selector.id_prefix is None
    assert str(selector) == "busybox"


def test_selector_refuses_what_is_neither():
    with pytest.raises(InvalidReferenceError, match="must be lowercase"):
        parse_image_selector("Busybox")


class Candidate:
    """What resolve_selector needs of an image: an ID, references and (optionally) manifest digests."""

    def __init__(self, image_id, refs, digests=None):
        self.id = image_id
        self.references = [parse_reference(text) for text in refs]
        if digests is not None:
            self.digests = list(digests)


BUSYBOX = Candidate(ID_A, ["busybox:latest", "busybox:1"], [DIGEST])
NAMED_LIKE_AN_ID = Candidate(ID_B, ["a1a2:latest"])
UNTAGGED = Candidate(ID_C, [])
CANDIDATES = [BUSYBOX, NAMED_LIKE_AN_ID, UNTAGGED]


@pytest.mark.parametrize("selector, expected", [
    ("busybox:1", BUSYBOX),
    ("busybox", BUSYBOX),
    ("docker.io/library/busybox:latest", BUSYBOX),
    ("index.docker.io/library/busybox", BUSYBOX),
    (ID_B, NAMED_LIKE_AN_ID),
    (ID_B[len("sha256:"):], NAMED_LIKE_AN_ID),
    ("sha256:a2a2", NAMED_LIKE_AN_ID),
    ("a2a2a2", NAMED_LIKE_AN_ID),
    ("c3", UNTAGGED),
    ("busybox@" + DIGEST, BUSYBOX),
    ("busybox:other@" + DIGEST, BUSYBOX),
    ("busybox@" + ID_A, BUSYBOX),
    ("untagged@" + ID_C, UNTAGGED),
    ("a1a2", NAMED_LIKE_AN_ID),
    ("busybox:2", None),
    ("busybox@sha256:" + "9" * 64, None),
    ("sha256:ff", None),
    ("ff", None),
    ("sha256:" + "f" * 64, None),
])
def test_resolver_tries_name_then_id_then_prefix(selector, expected):
    assert resolve_selector(parse_image_selector(selector), CANDIDATES) is expected
    assert resolve_selector(selector, iter(CANDIDATES)) is expected


def test_name_wins_over_an_id_prefix():
    # "a1a1" names image B and is also a prefix of image A's ID: Docker takes the name.
    named = Candidate(ID_B, ["a1a1:latest"])
    assert ID_A.startswith("sha256:a1a1")
    assert resolve_selector("a1a1", [BUSYBOX, named]) is named
    assert resolve_selector("a1a1", [BUSYBOX]) is BUSYBOX


def test_digest_selector_without_digests_attribute():
    assert not hasattr(NAMED_LIKE_AN_ID, "digests")
    assert resolve_selector("x@" + ID_B, [NAMED_LIKE_AN_ID]) is NAMED_LIKE_AN_ID
    assert resolve_selector("x@" + DIGEST, [NAMED_LIKE_AN_ID]) is None


def test_the_same_image_listed_twice_is_not_ambiguous():
    twin = Candidate(ID_C, ["twin:1"])
    assert resolve_selector("c3c3", [UNTAGGED, twin]) is UNTAGGED


def test_ambiguous_short_id_names_the_candidates():
    with pytest.raises(InvalidReferenceError) as err:
        resolve_selector("sha256:a", CANDIDATES)
    message = str(err.value)
    assert message.startswith('short ID "sha256:a" is ambiguous: matches ')
    assert "sha256:a1a1a1a1a1a1\u2026, sha256:a2a2a2a2a2a2\u2026" in message
    assert message.endswith("; use more characters")
    assert ID_C[:12] not in message


def test_ambiguous_ids_are_shown_long_enough_to_tell_apart():
    first = Candidate("sha256:" + "e" * 20 + "1" + "0" * 43, [])
    second = Candidate("sha256:" + "e" * 20 + "2" + "0" * 43, [])
    with pytest.raises(InvalidReferenceError) as err:
        resolve_selector("e" * 14, [second, first])
    assert "sha256:%s1\u2026, sha256:%s2\u2026" % ("e" * 20, "e" * 20) in str(err.value)


def test_selector_object_can_be_built_directly():
    selector = ImageSelector("x", image_id=ID_C, id_prefix=ID_C[len("sha256:"):])
    assert selector.kind == "id"
    assert resolve_selector(selector, CANDIDATES) is UNTAGGED
