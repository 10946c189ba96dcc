# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What signs or describes an image, and how it is attached to the image's digest.

Two schemes are in use, and both travel with an image. OCI 1.1 *referrers* are manifests whose ``subject`` names the
image; a registry lists them at ``/v2/<name>/referrers/<digest>``, or, without that API, in an index under the
fallback tag ``sha256-<hex>`` (cosign 3 signs this way: a Sigstore bundle as the layer). cosign's older *tag scheme*
puts a manifest under ``sha256-<hex>.sig`` (simple-signing payloads), ``.att`` (DSSE attestations) or ``.sbom``; it
names the image only through the tag.
"""

import re

MEDIA_SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
MEDIA_DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
MEDIA_SIGSTORE_BUNDLE_PREFIX = "application/vnd.dev.sigstore.bundle"
ANNOTATION_COSIGN_SIGNATURE = "dev.cosignproject.cosign/signature"
ANNOTATION_COSIGN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANNOTATION_COSIGN_CHAIN = "dev.sigstore.cosign/chain"
ANNOTATION_COSIGN_BUNDLE = "dev.sigstore.cosign/bundle"
ANNOTATION_BUNDLE_PREDICATE = "dev.sigstore.bundle.predicateType"
ANNOTATION_COSIGN_KIND = "kind"
PREDICATE_COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SBOM_TYPES = ("spdx", "cyclonedx", "syft")

# cosign's tag suffix -> what the object is, and the ``kind`` annotation ``cosign save`` gives it in a layout.
TAG_SUFFIXES = {"sig": "signature", "att": "attestation", "sbom": "sbom"}
COSIGN_SAVE_KINDS = {"sig": "dev.cosignproject.cosign/sigs", "att": "dev.cosignproject.cosign/atts",
                     "sbom": "dev.cosignproject.cosign/sboms"}
COSIGN_SAVE_IMAGE_KIND = "dev.cosignproject.cosign/image"
COSIGN_SAVE_INDEX_KIND = "dev.cosignproject.cosign/imageIndex"
_TAG_RE = re.compile(r"^(sha256)-([0-9a-f]{64})(?:\.(sig|att|sbom))?$")


def attachment_tag(digest, suffix=None):
    """cosign's tag for what is attached to ``digest`` (``sha256-<hex>.sig``); without a suffix, the OCI referrers
    fallback tag ``sha256-<hex>``."""
    algorithm, encoded = digest.split(":", 1)
    return "%s-%s%s" % (algorithm, encoded, "." + suffix if suffix else "")


def parse_attachment_tag(tag):
    """``(digest, suffix)`` a cosign or referrers-fallback tag names (suffix None for the fallback tag), else None."""
    match = _TAG_RE.match(tag or "")
    if match is None:
        return None
    return "%s:%s" % (match.group(1), match.group(2)), match.group(3)


def attachment_kind(artifact_type, layer_media_types, annotations=None, suffix=None):
    """``signature``, ``attestation``, ``sbom`` or ``artifact``: what an attached manifest is, by its tag suffix,
    media types and cosign's annotations."""
    if suffix:
        return TAG_SUFFIXES[suffix]
    annotations = annotations or {}
    types = [artifact_type or ""] + [media_type or "" for media_type in layer_media_types]
    if any(media_type.startswith(MEDIA_SIGSTORE_BUNDLE_PREFIX) for media_type in types):
        predicate = annotations.get(ANNOTATION_BUNDLE_PREDICATE)
        return "signature" if predicate in (None, PREDICATE_COSIGN_SIGN) else "attestation"
    if MEDIA_SIMPLE_SIGNING in types:
        return "signature"
    if MEDIA_DSSE_ENVELOPE in types or "in-toto" in (artifact_type or ""):
        return "attestation"
    if any(word in media_type for media_type in types for word in SBOM_TYPES):
        return "sbom"
    return "artifact"


def referrer_entry(artifact):
    """The descriptor a referrers list (the API's answer, or the fallback tag's index) gives ``artifact``: its
    manifest's, with its ``artifactType`` and annotations, as the distribution spec asks."""
    descriptor = artifact.manifest.descriptor(artifact.annotations)
    if artifact.artifact_type:
        descriptor["artifactType"] = artifact.artifact_type
    return descriptor
