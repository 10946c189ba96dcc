# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reference parsing and normalisation, checked against what Docker's distribution/reference gives."""

import pytest

from ansible_collections.airgap.images.plugins.module_utils.errors import InvalidReferenceError
from ansible_collections.airgap.images.plugins.module_utils.reference import (
    is_image_id, looks_like_short_id, normalise_image_id, parse_image_selector, parse_reference, resolve_selector)

DIGEST = "sha256:" + "ab" * 32
ID_A = "sha256:" + "a1" * 32
ID_B = "sha256:" + "a2" * 32


@pytest.mark.parametrize("text, normalised, familiar", [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1", "busybox:1"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("docker.io/user/app:2", "docker.io/user/app:2", "user/app:2"),
    ("docker.io/library/a/b:1", "docker.io/library/a/b:1", "library/a/b:1"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t"),
    ("example.com/x", "example.com/x:latest", "example.com/x:latest"),
    ("quay.io/org/repo:v1.2.3", "quay.io/org/repo:v1.2.3", "quay.io/org/repo:v1.2.3"),
    ("registry.example.com:443/team/app:latest", "registry.example.com:443/team/app:latest",
     "registry.example.com:443/team/app:latest"),
    ("127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1", "127.0.0.1:5000/app:1"),
    ("[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000/app:1"),
    ("busybox@" + DIGEST, "docker.io/library/busybox@" + DIGEST, "busybox@" + DIGEST),
    ("busybox:1@" + DIGEST, "docker.io/library/busybox:1@" + DIGEST, "busybox:1@" + DIGEST),
    ("quay.io/x/y@" + DIGEST, "quay.io/x/y@" + DIGEST, "quay.io/x/y@" + DIGEST),
    ("a_b/c__d/e-f.g:T_1", "docker.io/a_b/c__d/e-f.g:T_1", "a_b/c__d/e-f.g:T_1"),
    ("a---b", "docker.io/library/a---b:latest", "a---b:latest"),
    ("abc123", "docker.io/library/abc123:latest", "abc123:latest"),
    ("Registry.Example.com/app", "Registry.Example.com/app:latest", "Registry.Example.com/app:latest"),
    ("x:" + "t" * 128, "docker.io/library/x:" + "t" * 128, "x:" + "t" * 128),
    ("my-registry.local:5000/ns/sub/app:1.0-rc1", "my-registry.local:5000/ns/sub/app:1.0-rc1",
     "my-registry.local:5000/ns/sub/app:1.0-rc1"),
    ("localhost:5000/app", "localhost:5000/app:latest", "localhost:5000/app:latest"),
])
def test_normalised_and_familiar_forms(text, normalised, familiar):
    reference = parse_reference(text)
    assert str(reference) == normalised
    assert reference.familiar() == familiar
    assert parse_reference(str(reference)) == reference
    assert parse_reference(reference.familiar()) == reference


def test_parts_and_helpers():
    reference = parse_reference("localhost:5000/a/b:t")
    assert (reference.domain, reference.path, reference.tag, reference.digest) == ("localhost:5000", "a/b", "t", None)
    assert reference.name == "localhost:5000/a/b"
    assert reference.is_tagged and not reference.is_digested
    assert str(reference.with_tag("u")) == "localhost:5000/a/b:u"
    assert parse_reference("busybox").familiar_name() == "busybox"
    assert parse_reference("busybox", default_tag=None).tag is None
    assert len({parse_reference("busybox"), parse_reference("docker.io/library/busybox:latest")}) == 1


@pytest.mark.parametrize("text, fragment", [
    ("", "empty"),
    (" busybox", "white space"),
    ("Busybox", "must be lowercase"),
    ("user/App:1", "must be lowercase"),
    ("a" * 64, "64-byte hexadecimal"),
    ("busybox:", "tag ''"),
    ("busybox:.hidden", "tag '.hidden'"),
    ("busybox:" + "t" * 129, "1 to 128 characters"),
    ("busybox@sha256:abc", "not of the form"),
    ("busybox@sha256:" + "AB" * 32, "64 lowercase hexadecimal"),
    ("a//b", "component ''"),
    ("-a", "component '-a'"),
    ("a_", "component 'a_'"),
    ("a/b!/c", "component 'b!'"),
    ("exa_mple.com:5000/x", "not a valid host"),
    ("example.com:port/x", "not a valid host"),
    ("x" * 250 + "/" + "y" * 10, "longer than 255"),
])
def test_invalid_references_say_what_is_wrong(text, fragment):
    with pytest.raises(InvalidReferenceError) as err:
        parse_reference(text)
    assert fragment in str(err.value)
    assert 'invalid image reference "%s"' % text in str(err.value)


def test_image_id_helpers():
    assert is_image_id(ID_A) and is_image_id(ID_A.split(":")[1])
    assert not is_image_id("sha256:abc") and not is_image_id("busybox")
    assert normalise_image_id(ID_A.split(":")[1]) == ID_A
    with pytest.raises(InvalidReferenceError, match="invalid image ID"):
        normalise_image_id("nope")
    assert looks_like_short_id("a1a1") and looks_like_short_id("sha256:a1")
    assert not looks_like_short_id("busybox") and not looks_like_short_id("A1")


class Candidate:
    def __init__(self, image_id, refs, digests=()):
        self.id = image_id
        self.references = [parse_reference(r) for r in refs]
        self.digests = list(digests)


CANDIDATES = [Candidate(ID_A, ["busybox:latest", "busybox:1"], [DIGEST]), Candidate(ID_B, ["a1a2:latest"])]


@pytest.mark.parametrize("selector, expected", [
    ("busybox", ID_A),
    ("busybox:1", ID_A),
    ("docker.io/library/busybox:latest", ID_A),
    (ID_B, ID_B),
    (ID_B.split(":")[1], ID_B),
    ("sha256:a2a2", ID_B),
    ("a2a2a2", ID_B),
    ("busybox@" + DIGEST, ID_A),
    ("busybox@" + ID_A, ID_A),
    ("a1a2", ID_B),
    ("busybox:2", None),
    ("sha256:ff", None),
])
def test_resolver_tries_name_then_id_then_prefix(selector, expected):
    found = resolve_selector(selector, CANDIDATES)
    assert (found.id if found else None) == expected


def test_ambiguous_short_id_names_the_candidates():
    with pytest.raises(InvalidReferenceError) as err:
        resolve_selector("sha256:a", CANDIDATES)
    assert "ambiguous" in str(err.value) and ID_A[:19] in str(err.value) and ID_B[:19] in str(err.value)


def test_selector_kinds():
    assert parse_image_selector(ID_A).kind == "id"
    selector = parse_image_selector("abc123")
    assert selector.kind == "reference" and selector.id_prefix == "abc123"
    assert parse_image_selector("busybox").id_prefix is None
