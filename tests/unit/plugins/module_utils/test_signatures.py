# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The signature check's logic on signatures made here in cosign's two formats (tests/system/test_signed_rollout.py
checks cosign's own), above all the refusals: bad input of every kind is a reason, never a pass."""

import base64
import io
import os

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ansible_collections.airgap.images.plugins.module_utils.attachments import (
    ANNOTATION_BUNDLE_PREDICATE, ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_SIGNATURE, MEDIA_SIMPLE_SIGNING,
    PREDICATE_COSIGN_SIGN, attachment_tag)
from ansible_collections.airgap.images.plugins.module_utils.build import build_image, layer_from_bytes, layer_tar
from ansible_collections.airgap.images.plugins.module_utils.digest import sha256_digest
from ansible_collections.airgap.images.plugins.module_utils.formats.oci_layout import canonical_json, read_layout_images
from ansible_collections.airgap.images.plugins.module_utils.formats.safetar import DirSource
from ansible_collections.airgap.images.plugins.module_utils.model import MEDIA_OCI_MANIFEST, Artifact, BlobRef, RawDocument
from ansible_collections.airgap.images.plugins.module_utils.reference import parse_reference
from ansible_collections.airgap.images.plugins.module_utils.signatures import (
    SignatureError, SignaturePolicy, SignatureRefusedError, check_image, dsse_pae, load_public_keys, policy_from_options, refuse_unsigned)
from ansible_collections.airgap.images.plugins.module_utils.stores.layout import LayoutStore

BUNDLE_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
EMPTY = b"{}"


def private_key(kind):
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def sign(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def public_pem(key):
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """An image read back from an OCI layout, so that it has a manifest digest to be signed."""
    root = str(tmp_path_factory.mktemp("signed") / "layout")
    made = build_image([layer_from_bytes(layer_tar({"a": b"signed"}))], [parse_reference("example.com/app:1")])
    LayoutStore(root).import_images([made])
    return read_layout_images(DirSource(root))[0]


def blob(data):
    return BlobRef(sha256_digest(data), len(data), lambda: io.BytesIO(data))


def artifact(layers, blobs, subject=None, tag=None, annotations=None):
    manifest = {"schemaVersion": 2, "mediaType": MEDIA_OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(EMPTY), "size": 2},
                "layers": layers}
    if subject and not tag:
        manifest["subject"] = {"mediaType": MEDIA_OCI_MANIFEST, "digest": subject, "size": 1}
        manifest["artifactType"] = BUNDLE_TYPE
    if annotations:
        manifest["annotations"] = annotations
    raw = RawDocument(canonical_json(manifest), MEDIA_OCI_MANIFEST)
    return Artifact(raw.digest, MEDIA_OCI_MANIFEST, manifest.get("artifactType") or layers[0]["mediaType"],
                    manifest["config"]["mediaType"], [layer["mediaType"] for layer in layers],
                    references=[parse_reference("example.com/app:" + tag)] if tag else (), subject=manifest.get("subject", {}).get("digest"),
                    manifest=raw, blobs=[blob(EMPTY)] + [blob(data) for data in blobs], tag=tag, annotations=annotations)


def simple_signing(digest, key, subject=None, payload=None, signature=None, annotations=None):
    """cosign's .sig: the payload blob and its signature in the layer's annotation, under the tag of ``subject``."""
    payload = payload if payload is not None else canonical_json({"critical": {
        "identity": {"docker-reference": "registry.example.com/team/app"}, "image": {"docker-manifest-digest": digest},
        "type": "cosign container image signature"}, "optional": None})
    signature = signature if signature is not None else sign(key, payload)
    layer_annotations = {ANNOTATION_COSIGN_SIGNATURE: base64.b64encode(signature).decode()}
    layer_annotations.update(annotations or {})
    layer = {"mediaType": MEDIA_SIMPLE_SIGNING, "digest": sha256_digest(payload), "size": len(payload), "annotations": layer_annotations}
    return artifact([layer], [payload], tag=attachment_tag(subject or digest, "sig"))


def sigstore_bundle(digest, key, subject=None, predicate=PREDICATE_COSIGN_SIGN, hint=None, data=None):
    """cosign 3's referrer: a Sigstore bundle holding a DSSE envelope of an in-toto statement about ``digest``."""
    statement = canonical_json({"_type": "https://in-toto.io/Statement/v1", "subject": [
        {"digest": {"sha256": digest.split(":")[1]}}], "predicateType": predicate, "predicate": {}})
    signature = sign(key, dsse_pae("application/vnd.in-toto+json", statement))
    key_id = hint or load_public_keys([public_pem(key)])[0].key_id
    data = data if data is not None else canonical_json({"mediaType": BUNDLE_TYPE, "verificationMaterial": {"publicKey": {"hint": key_id}},
                                                         "dsseEnvelope": {"payload": base64.b64encode(statement).decode(),
                                                                          "payloadType": "application/vnd.in-toto+json",
                                                                          "signatures": [{"sig": base64.b64encode(signature).decode()}]}})
    layer = {"mediaType": BUNDLE_TYPE, "digest": sha256_digest(data), "size": len(data)}
    return artifact([layer], [data], subject=subject or digest, annotations={ANNOTATION_BUNDLE_PREDICATE: PREDICATE_COSIGN_SIGN})


def policy(*keys):
    return SignaturePolicy(load_public_keys([public_pem(key) for key in keys]))


def verdict(image, *artifacts, keys):
    return check_image(image.with_referrers(list(artifacts)), policy(*keys))


@pytest.mark.parametrize("kind", ["ecdsa-p256", "rsa", "ed25519"])
def test_each_key_type_verifies_both_formats(image, kind):
    key = private_key(kind)
    for made in (simple_signing(image.manifest_digest, key), sigstore_bundle(image.manifest_digest, key)):
        result = verdict(image, made, keys=[private_key("ecdsa-p256"), key])
        assert result["verified"] and result["reason"] is None, result
        (check,) = result["signatures"]
        assert check["signed_digest"] == image.manifest_digest and check["key"] == "signed_by key 2"


def test_an_image_without_signatures_is_refused_and_the_error_names_it(image):
    with pytest.raises(SignatureRefusedError) as err:
        refuse_unsigned([image], policy(private_key("ecdsa-p256")))
    assert str(err.value).startswith("signature check refused 1 of 1 image(s), nothing was loaded: example.com/app:1 (%s): no signature"
                                     % image.manifest_digest)


def test_a_signature_by_another_key_is_refused(image):
    key, other = private_key("ecdsa-p256"), private_key("ecdsa-p256")
    assert verdict(image, simple_signing(image.manifest_digest, other), keys=[key])["reason"] == \
        "bad signature or unknown key: it verifies with none of the 1 keys given"
    reason = verdict(image, sigstore_bundle(image.manifest_digest, other), keys=[key])["reason"]
    assert reason.startswith("signed by an unknown key (key id ")


def test_a_bundle_naming_a_key_it_was_not_signed_with_is_a_bad_signature(image):
    key, other = private_key("ecdsa-p256"), private_key("ecdsa-p256")
    forged = sigstore_bundle(image.manifest_digest, other, hint=load_public_keys([public_pem(key)])[0].key_id)
    assert verdict(image, forged, keys=[key])["reason"] == "bad signature: it does not verify with signed_by key 1, the key it names"


def test_a_signature_moved_from_another_image_is_refused(image):
    key = private_key("ecdsa-p256")
    other_digest = "sha256:" + "ab" * 32
    moved = [simple_signing(other_digest, key, subject=image.manifest_digest), sigstore_bundle(other_digest, key, subject=image.manifest_digest)]
    for made in moved:
        reason = verdict(image, made, keys=[key])["reason"]
        assert reason == "the signed payload is for %s, not for this image's %s (a signature moved from another image)" % (
            other_digest, image.manifest_digest)


def test_a_signature_attached_to_another_digest_does_not_count(image):
    key = private_key("ecdsa-p256")
    elsewhere = simple_signing("sha256:" + "cd" * 32, key)
    result = verdict(image, elsewhere, keys=[key])
    assert result["signatures"] == [] and result["reason"].startswith("no signature")


@pytest.mark.parametrize("data, reason", [
    (b"not json at all", "the Sigstore bundle is not JSON (truncated or corrupt)"),
    (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "dsseEnvelope": {"payload": "ey',
     "the Sigstore bundle is not JSON (truncated or corrupt)"),
    (b'["a", "list"]', "the Sigstore bundle is not a JSON object"),
    (b'{"messageSignature": {}}', "the Sigstore bundle holds a message signature (it signs a blob), not a signed statement about the image"),
    (b'{"dsseEnvelope": {"payload": "e30=", "payloadType": "text/plain", "signatures": []}}',
     "the DSSE envelope is not a signed in-toto statement (payloadType 'text/plain', 0 signatures)"),
    (b'{"dsseEnvelope": {"payload": "%%%", "payloadType": "application/vnd.in-toto+json", "signatures": [{"sig": "AA=="}]}}',
     "the DSSE payload is not base64"),
])
def test_bad_bundles_are_refused_with_what_is_wrong(image, data, reason):
    key = private_key("ecdsa-p256")
    assert verdict(image, sigstore_bundle(image.manifest_digest, key, data=data), keys=[key])["reason"] == reason


def test_an_attestation_is_not_a_signature_whatever_its_annotation_says(image):
    key = private_key("ecdsa-p256")
    sbom = sigstore_bundle(image.manifest_digest, key, predicate="https://spdx.dev/Document")
    assert sbom.kind == "signature"  # the unsigned annotation claims it
    assert verdict(image, sbom, keys=[key])["reason"] == "the signed statement is a 'https://spdx.dev/Document' attestation, not a cosign signature"


def test_a_payload_that_is_not_json_is_refused_even_with_a_good_signature(image):
    key = private_key("ecdsa-p256")
    made = simple_signing(image.manifest_digest, key, payload=b"\x00garbage")
    assert verdict(image, made, keys=[key])["reason"] == "the simple-signing payload is not JSON (truncated or corrupt)"


def test_a_payload_of_another_type_is_refused(image):
    key = private_key("ecdsa-p256")
    payload = canonical_json({"critical": {"image": {"docker-manifest-digest": image.manifest_digest}, "type": "something else"}})
    assert verdict(image, simple_signing(image.manifest_digest, key, payload=payload), keys=[key])["reason"] == \
        "the payload's type is 'something else', not 'cosign container image signature'"


def test_a_signature_annotation_that_is_not_base64_is_refused(image):
    key = private_key("ecdsa-p256")
    made = simple_signing(image.manifest_digest, key, signature=b"")
    made.manifest = RawDocument(made.manifest.data.replace(b'"dev.cosignproject.cosign/signature":""',
                                                           b'"dev.cosignproject.cosign/signature":"%%"'), MEDIA_OCI_MANIFEST)
    assert verdict(image, made, keys=[key])["reason"] == "the signature annotation is not base64"


def test_a_keyless_signature_without_a_trust_root_says_what_is_missing(image):
    key = private_key("ecdsa-p256")
    made = simple_signing(image.manifest_digest, key, annotations={ANNOTATION_COSIGN_CERTIFICATE: "-----BEGIN CERTIFICATE-----"})
    assert verdict(image, made, keys=[key])["reason"].startswith(
        "a keyless signature (a Fulcio certificate, no key) cannot be verified offline without the Sigstore trust root")


def test_an_image_without_a_manifest_cannot_be_checked(image):
    result = verdict(image.without_manifest(), keys=[private_key("ecdsa-p256")])
    assert not result["verified"] and result["reason"].startswith("no manifest digest to check signatures against")


def test_a_file_that_is_not_a_key_is_an_error_naming_it(tmp_path):
    path = tmp_path / "cosign.pub"
    path.write_text("hello\n")
    with pytest.raises(SignatureError) as err:
        load_public_keys([str(path)])
    assert str(err.value).startswith("%s is not a PEM public key" % path)
    with pytest.raises(SignatureError) as err:
        load_public_keys([str(tmp_path / "absent.pub")])
    assert str(err.value) == "cannot read the public key %s: No such file or directory" % (tmp_path / "absent.pub")


def test_a_private_key_or_an_unsupported_curve_is_refused_as_a_key():
    private = private_key("ecdsa-p256").private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()).decode()
    with pytest.raises(SignatureError) as err:
        load_public_keys([private])
    assert str(err.value).startswith("signed_by key 1 is not a PEM public key")
    p521 = public_pem(ec.generate_private_key(ec.SECP521R1()))
    with pytest.raises(SignatureError) as err:
        load_public_keys([p521])
    assert "signed_by takes ECDSA P-256/P-384, RSA or Ed25519 public keys" in str(err.value)


def test_the_key_id_is_cosigns():
    """cosign's hint for the key of tests/system/test_signed_rollout.py's first run: base64(sha256(DER SPKI))."""
    pem = ("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE6YoLKCPpW5Wkc5V4FRzAwucwBnee\n"
           "1G5Lb3V94s18+yji5KtMCBtle+xlfw7HetPcZ1ZuxRESuj9PsJeNpaYufA==\n-----END PUBLIC KEY-----\n")
    assert load_public_keys([pem])[0].key_id == "qZnJeG8y8gGCpXEtpd2dbC2ZBsWI2kkunW2zI93XHmA="


# Keyless, on sigstore-go's published DSSE bundle (tests/fixtures/sigstore/README.md) -----------------------------

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "sigstore")
WORKFLOW = "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
ACTIONS = "https://token.actions.githubusercontent.com"


def keyless_bundle_artifact(digest):
    """The real keyless bundle (a Fulcio certificate, Rekor's proofs) as a referrer of ``digest``."""
    with open(os.path.join(FIXTURES, "sigstore.js@2.0.0-provenance.sigstore.json"), "rb") as handle:
        data = handle.read()
    layer = {"mediaType": BUNDLE_TYPE, "digest": sha256_digest(data), "size": len(data)}
    return artifact([layer], [data], subject=digest)


def keyless_policy(subject):
    return policy_from_options(None, os.path.join(FIXTURES, "trusted_root.public-good.json"),
                               [{"issuer": ACTIONS, "subject": subject}])


def test_a_real_keyless_signature_verifies_against_the_trust_root_and_then_counts_only_for_what_it_signs(image):
    """The certificate, signature and Rekor entry verify offline (the identity is the workflow's), and the check
    goes on to the statement: SLSA provenance about an npm package, not a cosign signature of this image."""
    result = check_image(image.with_referrers([keyless_bundle_artifact(image.manifest_digest)]), keyless_policy(WORKFLOW))
    (check,) = result["signatures"]
    assert (check["identity"], check["issuer"], check["key"]) == (WORKFLOW, ACTIONS, "sigstore_trust_root")
    assert check["reason"] == "the signed statement is a 'https://slsa.dev/provenance/v1' attestation, not a cosign signature"


def test_a_keyless_signer_not_named_is_refused(image):
    result = check_image(image.with_referrers([keyless_bundle_artifact(image.manifest_digest)]),
                         keyless_policy("https://github.com/someone/else/.github/workflows/release.yml@refs/heads/main"))
    assert result["reason"] == "keyless signature by %s (issuer %s), who is none of sigstore_identities" % (WORKFLOW, ACTIONS)


def test_a_keyless_signature_against_another_trust_root_is_refused(image):
    wrong = policy_from_options(None, os.path.join(FIXTURES, "trusted_root.staging.json"), [{"issuer": ACTIONS, "subject": WORKFLOW}])
    result = check_image(image.with_referrers([keyless_bundle_artifact(image.manifest_digest)]), wrong)
    assert result["reason"].startswith("keyless signature refused: ")


def test_a_trust_root_without_identities_is_an_error():
    with pytest.raises(SignatureError) as err:
        policy_from_options(None, os.path.join(FIXTURES, "trusted_root.public-good.json"), [])
    assert str(err.value).startswith("sigstore_trust_root needs sigstore_identities")
