# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""cosign's legacy keyless ``.sig`` format, end to end on a real signature (tests/fixtures/sigstore/legacy/README.md):
a production Fulcio certificate, chain and Rekor bundle in the layer's annotations, converted by ``legacy_as_bundle``
and verified offline by keyless.py against the public-good trust root; then every way of spoiling it is refused."""

import base64
import copy
import io
import json
import os

import pytest

from ansible_collections.airgap.images.plugins.module_utils import signatures
from ansible_collections.airgap.images.plugins.module_utils.attachments import (
    ANNOTATION_COSIGN_BUNDLE, ANNOTATION_COSIGN_CHAIN, ANNOTATION_COSIGN_SIGNATURE, attachment_tag)
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import canonical_json
from ansible_collections.airgap.images.plugins.module_utils.keyless import load_trust_root, verify_keyless
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_MANIFEST, Artifact, BlobRef, RawDocument
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference

SIGSTORE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "sigstore")
LEGACY = os.path.join(SIGSTORE, "legacy")
PUBLIC_GOOD = os.path.join(SIGSTORE, "trusted_root.public-good.json")
STAGING = os.path.join(SIGSTORE, "trusted_root.staging.json")
KMS_KEY = os.path.join(LEGACY, "kms_pub.pem")
SIGNED_DIGEST = "sha256:5ce2d8cd8e366d76ce012edc346daeb15a5643c26b9b24a2b731e97a99c6de52"
DOCKER_REFERENCE = "us-central1-docker.pkg.dev/cosign-test-384419/repo1/securebuild"
IDENTITY = "cosign@cosign-test-384419.iam.gserviceaccount.com"
ISSUER = "https://accounts.google.com"
KEYED, KEYLESS = 0, 1  # the .sig holds two layers over the same payload: one signed with a KMS key, one keyless


def read(name, mode="rb"):
    with open(os.path.join(LEGACY, name), mode) as handle:
        return handle.read()


def published_manifest():
    return json.loads(read("securebuild.sig.manifest.json"))


def sig_artifact(manifest=None, payload=None, subject=SIGNED_DIGEST):
    """The ``.sig`` manifest as an Artifact tagged ``sha256-<hex>.sig`` for ``subject``, its payload blob with it;
    a ``payload`` given replaces the published one, and the layers' digest and size follow it."""
    manifest = copy.deepcopy(manifest or published_manifest())
    payload = payload if payload is not None else read("securebuild.payload.json")
    for layer in manifest["layers"]:
        layer["digest"], layer["size"] = sha256_digest(payload), len(payload)
    raw = RawDocument(canonical_json(manifest), MEDIA_OCI_MANIFEST)
    tag = attachment_tag(subject, "sig")
    layers = manifest["layers"]
    return Artifact(raw.digest, MEDIA_OCI_MANIFEST, layers[0]["mediaType"], manifest["config"]["mediaType"],
                    [layer["mediaType"] for layer in layers], references=[parse_reference("example.com/securebuild:" + tag)],
                    manifest=raw, blobs=[BlobRef(sha256_digest(payload), len(payload), lambda: io.BytesIO(payload))], tag=tag)


def keyless_policy(trust_root=PUBLIC_GOOD, issuer=ISSUER, subject=IDENTITY, signed_by=None):
    return signatures.policy_from_options(signed_by, trust_root, [{"issuer": issuer, "subject": subject}])


def keyless_check(artifact, policy=None):
    checks = signatures.check_artifact(artifact, policy or keyless_policy())
    assert [check["format"] for check in checks] == ["simple-signing", "simple-signing"]
    return checks[KEYLESS]


def with_annotations(**changes):
    """The published manifest with the keyless layer's annotations changed (None removes one)."""
    manifest = published_manifest()
    annotations = manifest["layers"][KEYLESS]["annotations"]
    for name, value in changes.items():
        if value is None:
            del annotations[name]
        else:
            annotations[name] = value
    return manifest


def keyless_annotation(name):
    return published_manifest()["layers"][KEYLESS]["annotations"][name]


def test_the_fixture_is_what_cosign_and_rekor_recorded():
    """The payload is the blob the layers name and the one Rekor's hashedrekord entry records."""
    payload = read("securebuild.payload.json")
    manifest = published_manifest()
    assert [layer["digest"] for layer in manifest["layers"]] == [sha256_digest(payload)] * 2
    assert [layer["size"] for layer in manifest["layers"]] == [len(payload)] * 2 == [292, 292]
    rekor = json.loads(keyless_annotation(ANNOTATION_COSIGN_BUNDLE))
    body = json.loads(base64.b64decode(rekor["Payload"]["body"]))
    assert (body["kind"], body["apiVersion"]) == ("hashedrekord", "0.0.1")
    assert "sha256:" + body["spec"]["data"]["hash"]["value"] == sha256_digest(payload)
    assert json.loads(payload)["critical"]["image"]["docker-manifest-digest"] == SIGNED_DIGEST


def test_the_real_legacy_keyless_signature_verifies_with_its_identity():
    checks = signatures.check_artifact(sig_artifact(), keyless_policy())
    keyless = checks[KEYLESS]
    assert keyless["verified"] and keyless["reason"] is None, keyless
    assert (keyless["identity"], keyless["issuer"], keyless["key"]) == (IDENTITY, ISSUER, "sigstore_trust_root")
    assert (keyless["signed_digest"], keyless["docker_reference"]) == (SIGNED_DIGEST, DOCKER_REFERENCE)
    assert keyless["tag"] == "sha256-%s.sig" % SIGNED_DIGEST.split(":")[1]
    # The other layer is signed with a key, and no key was given: it alone does not pass.
    assert not checks[KEYED]["verified"]
    assert checks[KEYED]["reason"] == "bad signature or unknown key: it verifies with none of the 0 keys given"


def test_the_annotations_amount_to_a_bundle_whose_log_entry_and_sct_verify():
    annotations = published_manifest()["layers"][KEYLESS]["annotations"]
    bundle = signatures.legacy_as_bundle(annotations["dev.sigstore.cosign/certificate"], annotations[ANNOTATION_COSIGN_CHAIN],
                                         annotations[ANNOTATION_COSIGN_BUNDLE])
    assert len(bundle["verificationMaterial"]["x509CertificateChain"]["certificates"]) == 3  # leaf, intermediate, root
    found = verify_keyless(bundle, read("securebuild.payload.json"), base64.b64decode(annotations[ANNOTATION_COSIGN_SIGNATURE]),
                           load_trust_root(PUBLIC_GOOD))
    assert (found["identity"], found["issuer"], found["certificate_authority"]) == (IDENTITY, ISSUER, "https://fulcio.sigstore.dev")
    assert (found["log_index"], found["integrated_time"], found["log_proof"]) == (18589865, 1682104435, "signed entry timestamp")
    assert found["log_id"] == "c0d23d6ad406973f9559f3ba2d1ca01f84147d8ffc5b8445c224f98b9591801d"
    assert found["sct"] == "verified"


def test_the_keyed_layer_verifies_with_the_published_key_beside_the_keyless_one():
    checks = signatures.check_artifact(sig_artifact(), keyless_policy(signed_by=[KMS_KEY]))
    assert [check["verified"] for check in checks] == [True, True], checks
    assert (checks[KEYED]["key"], checks[KEYED]["identity"]) == (KMS_KEY, None)
    assert checks[KEYLESS]["identity"] == IDENTITY


def test_without_the_chain_annotation_the_trust_root_supplies_the_intermediate():
    check = keyless_check(sig_artifact(with_annotations(**{ANNOTATION_COSIGN_CHAIN: None})))
    assert check["verified"] and check["identity"] == IDENTITY, check


def test_a_flipped_signature_byte_is_refused():
    signature = bytearray(base64.b64decode(keyless_annotation(ANNOTATION_COSIGN_SIGNATURE)))
    signature[20] ^= 0x01
    spoiled = with_annotations(**{ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(bytes(signature)).decode()})
    check = keyless_check(sig_artifact(spoiled))
    assert not check["verified"]
    assert check["reason"] == ("keyless signature refused: signature: the signature does not verify with the signing certificate's key: "
                               "the signed content or the signature differs")


def test_a_payload_naming_another_digest_is_refused():
    other = "sha256:" + "ab" * 32
    payload = read("securebuild.payload.json").replace(SIGNED_DIGEST.encode(), other.encode())
    check = keyless_check(sig_artifact(payload=payload, subject=other))
    assert not check["verified"]
    assert check["reason"].startswith("keyless signature refused: signature: the signature does not verify with the signing certificate's key")


def test_the_real_signature_under_another_images_tag_is_refused():
    other = "sha256:" + "cd" * 32
    check = keyless_check(sig_artifact(subject=other))
    assert not check["verified"] and check["identity"] == IDENTITY
    assert check["reason"] == ("the signed payload is for %s, not for this image's %s (a signature moved from another image)"
                               % (SIGNED_DIGEST, other))


@pytest.mark.parametrize("issuer, subject", [
    (ISSUER, "someone@cosign-test-384419.iam.gserviceaccount.com"),
    ("https://token.actions.githubusercontent.com", IDENTITY),
])
def test_a_signer_not_named_is_refused_and_reported(issuer, subject):
    check = keyless_check(sig_artifact(), keyless_policy(issuer=issuer, subject=subject))
    assert not check["verified"]
    assert (check["identity"], check["issuer"]) == (IDENTITY, ISSUER)
    assert check["reason"] == "keyless signature by %s (issuer %s), who is none of sigstore_identities" % (IDENTITY, ISSUER)


def test_without_the_bundle_annotation_there_is_no_rekor_proof():
    check = keyless_check(sig_artifact(with_annotations(**{ANNOTATION_COSIGN_BUNDLE: None})))
    assert not check["verified"]
    assert check["reason"] == ("keyless signature refused: signature: the bundle has no transparency log entry "
                               "(verificationMaterial.tlogEntries): keyless verification needs one")


def test_a_bundle_whose_integrated_time_was_changed_is_refused():
    rekor = json.loads(keyless_annotation(ANNOTATION_COSIGN_BUNDLE))
    rekor["Payload"]["integratedTime"] += 60
    check = keyless_check(sig_artifact(with_annotations(**{ANNOTATION_COSIGN_BUNDLE: json.dumps(rekor)})))
    assert not check["verified"]
    assert check["reason"] == ("keyless signature refused: signature: transparency log entry 0 signed entry timestamp (inclusion promise) "
                               "does not verify with the key of log https://rekor.sigstore.dev: the entry or its promise was altered")


def test_a_bundle_annotation_that_is_not_json_is_refused():
    check = keyless_check(sig_artifact(with_annotations(**{ANNOTATION_COSIGN_BUNDLE: "{\"SignedEntryTimestamp\": "})))
    assert not check["verified"]
    assert check["reason"].startswith("keyless signature refused: cosign's keyless annotations cannot be read (")


def test_the_staging_trust_root_does_not_vouch_for_a_production_certificate():
    check = keyless_check(sig_artifact(), keyless_policy(trust_root=STAGING))
    assert not check["verified"]
    assert check["reason"].startswith("keyless signature refused: signature: the signing certificate (issued by "
                                      "CN=sigstore-intermediate,O=sigstore.dev) does not chain to a certificate authority of the trust root")
