# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline verification of keyless Sigstore bundles.

Real data first: bundles published by sigstore-python and sigstore-go with the trust roots
they verify against (see tests/fixtures/sigstore/README.md). The expected identities and
issuers were read from the fixtures' certificates with ``openssl x509 -text``. Then a test
PKI made here (CA, Fulcio-like leaf, Rekor-like log, CT log) covers what the real data does not.
"""

import base64
import copy
import datetime
import hashlib
import json
import os
import subprocess
import sys

import ansible_collections
import pytest

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.airgap.images.plugins.module_utils import keyless
from ansible_collections.airgap.images.plugins.module_utils.errors import ImageError
from ansible_collections.airgap.images.plugins.module_utils.keyless import (
    SCT_NOT_CHECKED, KeylessError, bundle_certificate, load_trust_root, merkle_root_from_path, verify_keyless)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "fixtures", "sigstore")
UTC = datetime.timezone.utc


def fixture_path(name):
    return os.path.join(FIXTURES, name)


def fixture_bytes(name):
    with open(fixture_path(name), "rb") as handle:
        return handle.read()


def fixture_json(name):
    return json.loads(fixture_bytes(name).decode("utf-8"))


def b64(data):
    return base64.b64encode(data).decode("ascii")


def message_signature(bundle):
    return base64.b64decode(bundle["messageSignature"]["signature"])


def dsse_pae(envelope):
    payload_type = envelope["payloadType"].encode("utf-8")
    payload = base64.b64decode(envelope["payload"])
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type, len(payload), payload)


@pytest.fixture(scope="module")
def staging_root():
    return load_trust_root(fixture_path("trusted_root.staging.json"))


@pytest.fixture(scope="module")
def public_good_root():
    return load_trust_root(fixture_path("trusted_root.public-good.json"))


@pytest.fixture()
def v3_bundle():
    return fixture_json("bundle_v3.txt.sigstore")


def verify_v3(bundle, trust_root, artifact=None, signature=None):
    artifact = fixture_bytes("bundle_v3.txt") if artifact is None else artifact
    return verify_keyless(bundle, artifact, message_signature(bundle) if signature is None else signature, trust_root)


def staging_root_with(change):
    document = fixture_json("trusted_root.staging.json")
    change(document)
    return load_trust_root(json.dumps(document))


# ---------------------------------------------------------------- real bundles that verify


def test_real_v03_hashedrekord_bundle_verifies(staging_root, v3_bundle):
    result = verify_v3(v3_bundle, staging_root)
    assert result["identity"] == "william@yossarian.net"
    assert result["issuer"] == "https://github.com/login/oauth"
    assert result["integrated_time"] == 1712085549
    assert result["log_index"] == 25915956
    assert result["log_id"] == base64.b64decode("0y8wo8MtY5wrdiIFohx7sHeI5oKDpK5vQhGHI6G+pJY=").hex()
    assert result["sct"] == "verified"
    assert result["log_proof"] == "signed entry timestamp and inclusion proof"


def test_real_v01_bundle_with_chain_and_p384_key_verifies(staging_root):
    bundle = fixture_json("bundle.txt.sigstore")
    result = verify_keyless(bundle, fixture_bytes("bundle.txt"), message_signature(bundle), staging_root)
    assert (result["identity"], result["issuer"]) == ("a@tny.town", "https://github.com/login/oauth")
    assert result["integrated_time"] == 1682468469
    assert result["sct"] == "verified"


def test_real_dsse_intoto_bundle_verifies(public_good_root):
    bundle = fixture_json("sigstore.js@2.0.0-provenance.sigstore.json")
    envelope = bundle["dsseEnvelope"]
    result = verify_keyless(bundle, dsse_pae(envelope), base64.b64decode(envelope["signatures"][0]["sig"]), public_good_root)
    assert result["identity"] == "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
    assert result["issuer"] == "https://token.actions.githubusercontent.com"
    assert result["log_index"] == 31821305
    assert result["certificate_authority"] == "https://fulcio.sigstore.dev"


def test_trust_root_loads_from_path_text_and_bytes(v3_bundle):
    text = fixture_bytes("trusted_root.staging.json")
    for source in (fixture_path("trusted_root.staging.json"), text, text.decode("utf-8")):
        assert verify_v3(v3_bundle, load_trust_root(source))["identity"] == "william@yossarian.net"


def test_bundle_certificate_reads_both_layouts():
    v3 = fixture_json("bundle_v3.txt.sigstore")
    v1 = fixture_json("bundle.txt.sigstore")
    assert bundle_certificate(v3) == base64.b64decode(v3["verificationMaterial"]["certificate"]["rawBytes"])
    assert bundle_certificate(v1) == base64.b64decode(v1["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"])
    assert bundle_certificate({"mediaType": "x", "verificationMaterial": {"publicKey": {"hint": "abc"}}}) is None
    assert bundle_certificate({}) is None


# ---------------------------------------------------------------- real bundle, refused


def test_flipped_signature_byte_is_refused(staging_root, v3_bundle):
    signature = bytearray(message_signature(v3_bundle))
    signature[10] ^= 0x01
    with pytest.raises(KeylessError, match="signature does not verify with the signing certificate's key"):
        verify_v3(v3_bundle, staging_root, signature=bytes(signature))


def test_different_artifact_is_refused(staging_root, v3_bundle):
    with pytest.raises(KeylessError, match="signature does not verify"):
        verify_v3(v3_bundle, staging_root, artifact=fixture_bytes("bundle_v3.txt") + b"tampered")


def alter_body(bundle, change):
    entry = bundle["verificationMaterial"]["tlogEntries"][0]
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    entry["canonicalizedBody"] = b64(change(body))


def test_log_body_for_another_artifact_is_refused(staging_root, v3_bundle):
    def other_digest(body):
        body["spec"]["data"]["hash"]["value"] = "00" * 32
        return json.dumps(body, separators=(",", ":")).encode()
    alter_body(v3_bundle, other_digest)
    with pytest.raises(KeylessError, match="transparency log entry 0 records the artifact sha256:0000.*another artifact"):
        verify_v3(v3_bundle, staging_root)


def test_log_body_for_another_signature_is_refused(staging_root, v3_bundle):
    def other_signature(body):
        body["spec"]["signature"]["content"] = b64(b"not this signature")
        return json.dumps(body, separators=(",", ":")).encode()
    alter_body(v3_bundle, other_signature)
    with pytest.raises(KeylessError, match="body does not record this signature"):
        verify_v3(v3_bundle, staging_root)


def test_log_body_with_another_certificate_is_refused(staging_root, v3_bundle):
    other = fixture_json("bundle.txt.sigstore")["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"]
    pem = "-----BEGIN CERTIFICATE-----\n%s\n-----END CERTIFICATE-----\n" % other

    def other_certificate(body):
        body["spec"]["signature"]["publicKey"]["content"] = b64(pem.encode())
        return json.dumps(body, separators=(",", ":")).encode()
    alter_body(v3_bundle, other_certificate)
    with pytest.raises(KeylessError, match="records this signature with another certificate or key"):
        verify_v3(v3_bundle, staging_root)


def test_log_body_reencoded_fails_both_proofs(staging_root, v3_bundle):
    # Same content, other bytes: the SET is refused first; without it, the inclusion proof.
    alter_body(v3_bundle, lambda body: json.dumps(body, indent=1).encode())
    with pytest.raises(KeylessError, match="signed entry timestamp .* does not verify with the key of log https://rekor.sigstage.dev"):
        verify_v3(v3_bundle, staging_root)
    del v3_bundle["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    with pytest.raises(KeylessError, match="inclusion proof does not lead from the entry to its rootHash"):
        verify_v3(v3_bundle, staging_root)


def test_altered_set_without_inclusion_proof_is_refused(staging_root, v3_bundle):
    entry = v3_bundle["verificationMaterial"]["tlogEntries"][0]
    del entry["inclusionProof"]
    assert verify_v3(v3_bundle, staging_root)["log_proof"] == "signed entry timestamp"
    promise = bytearray(base64.b64decode(entry["inclusionPromise"]["signedEntryTimestamp"]))
    promise[-3] ^= 0x40
    entry["inclusionPromise"]["signedEntryTimestamp"] = b64(bytes(promise))
    with pytest.raises(KeylessError, match="signed entry timestamp \\(inclusion promise\\) does not verify"):
        verify_v3(v3_bundle, staging_root)


def test_altered_integrated_time_breaks_the_set(staging_root, v3_bundle):
    entry = v3_bundle["verificationMaterial"]["tlogEntries"][0]
    del entry["inclusionProof"]
    entry["integratedTime"] = str(int(entry["integratedTime"]) + 1)
    with pytest.raises(KeylessError, match="signed entry timestamp"):
        verify_v3(v3_bundle, staging_root)


def test_inclusion_proof_only_needs_a_signed_checkpoint_time(staging_root, v3_bundle):
    # The staging checkpoint has no "Timestamp:" line, so nothing signed says when the entry was logged.
    entry = v3_bundle["verificationMaterial"]["tlogEntries"][0]
    del entry["inclusionPromise"]
    with pytest.raises(KeylessError, match="proven only by an inclusion proof whose checkpoint has no signed timestamp"):
        verify_v3(v3_bundle, staging_root)
    entry["inclusionProof"]["rootHash"] = b64(b"\x11" * 32)
    with pytest.raises(KeylessError, match="inclusion proof does not lead"):
        verify_v3(v3_bundle, staging_root)


def test_real_inclusion_proof_with_checkpoint_time_verifies(public_good_root):
    bundle = fixture_json("sigstore.js@2.0.0-provenance.sigstore.json")
    del bundle["verificationMaterial"]["tlogEntries"][0]["inclusionPromise"]
    envelope = bundle["dsseEnvelope"]
    result = verify_keyless(bundle, dsse_pae(envelope), base64.b64decode(envelope["signatures"][0]["sig"]), public_good_root)
    assert result["log_proof"] == "inclusion proof"


def test_altered_checkpoint_is_refused(staging_root, v3_bundle):
    proof = v3_bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["checkpoint"]["envelope"] = proof["checkpoint"]["envelope"].replace("25901138\n", "25901139\n")
    with pytest.raises(KeylessError, match="checkpoint signature does not verify with the key of log https://rekor.sigstage.dev"):
        verify_v3(v3_bundle, staging_root)


def test_trust_root_without_the_ca_is_refused(v3_bundle):
    def drop_authorities(document):
        document["certificateAuthorities"] = []
    with pytest.raises(KeylessError, match="trust root lists no certificate authority"):
        verify_v3(v3_bundle, staging_root_with(drop_authorities))


def test_trust_root_of_another_instance_is_refused(public_good_root, v3_bundle):
    with pytest.raises(KeylessError, match="does not chain to a certificate authority of the trust root .*https://fulcio.sigstore.dev"):
        verify_v3(v3_bundle, public_good_root)


def test_trust_root_without_the_log_is_refused(v3_bundle):
    def drop_rekor_v1(document):
        document["tlogs"] = [log for log in document["tlogs"] if log["baseUrl"] != "https://rekor.sigstage.dev"]
    with pytest.raises(KeylessError, match="from the log with ID 0y8wo8MtY5wrdiIFohx7sHeI5oKDpK5vQhGHI6G\\+pJY=, which the trust root does not list"):
        verify_v3(v3_bundle, staging_root_with(drop_rekor_v1))


def test_trust_root_without_any_log_is_refused(v3_bundle):
    with pytest.raises(KeylessError, match="trust root lists no transparency log"):
        verify_v3(v3_bundle, staging_root_with(lambda document: document.update(tlogs=[])))


def test_ca_window_that_ended_before_signing_is_refused(v3_bundle):
    def end_ca(document):
        document["certificateAuthorities"][0]["validFor"]["end"] = "2023-01-01T00:00:00Z"
    with pytest.raises(KeylessError, match="certificate authority https://fulcio.sigstage.dev was not valid at the signing time 2024-04-02T19:19:09Z"):
        verify_v3(v3_bundle, staging_root_with(end_ca))


def test_log_key_window_that_ended_before_signing_is_refused(v3_bundle):
    def end_log(document):
        document["tlogs"][0]["publicKey"]["validFor"]["end"] = "2023-01-01T00:00:00.000Z"
    with pytest.raises(KeylessError, match="when the trust root's key for log https://rekor.sigstage.dev was not valid"):
        verify_v3(v3_bundle, staging_root_with(end_log))


def test_sct_not_checked_without_ct_logs(v3_bundle):
    assert verify_v3(v3_bundle, staging_root_with(lambda document: document.update(ctlogs=[])))["sct"] == SCT_NOT_CHECKED


def test_sct_from_a_log_missing_from_the_trust_root_is_refused(v3_bundle):
    def other_ct_log(document):
        document["ctlogs"] = [log for log in document["ctlogs"] if log["baseUrl"] != "https://ctfe.sigstage.dev/2022-2"]
    with pytest.raises(KeylessError, match="certificate transparency proof \\(SCT\\) does not verify: .*which the trust root does not list"):
        verify_v3(v3_bundle, staging_root_with(other_ct_log))


def test_sct_checked_with_a_wrong_ct_key_is_refused(v3_bundle):
    def swap_ct_key(document):
        by_url = {log["baseUrl"]: log for log in document["ctlogs"]}
        by_url["https://ctfe.sigstage.dev/2022-2"]["publicKey"]["rawBytes"] = by_url["https://ctfe.sigstage.dev/2022"]["publicKey"]["rawBytes"]
    with pytest.raises(KeylessError, match="SCT whose signature does not verify with the key of CT log https://ctfe.sigstage.dev/2022-2"):
        verify_v3(v3_bundle, staging_root_with(swap_ct_key))


def test_truncated_bundle_json_and_missing_material_are_refused(staging_root):
    text = fixture_bytes("bundle_v3.txt.sigstore").decode("utf-8")
    with pytest.raises(ValueError):
        json.loads(text[:200])
    with pytest.raises(KeylessError, match="the Sigstore bundle has no verificationMaterial"):
        verify_keyless({"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}, b"x", b"y", staging_root)
    with pytest.raises(KeylessError, match="the Sigstore bundle is not a JSON object"):
        verify_keyless(text[:200], b"x", b"y", staging_root)


def test_bundle_without_certificate_is_refused(staging_root):
    bundle = {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json", "verificationMaterial": {"publicKey": {"hint": "k"}}}
    with pytest.raises(KeylessError, match="carries no certificate, so it is not keyless: it is signed with a key"):
        verify_keyless(bundle, b"x", b"y", staging_root)


def test_bundle_without_tlog_entry_is_refused(staging_root, v3_bundle):
    v3_bundle["verificationMaterial"]["tlogEntries"] = []
    with pytest.raises(KeylessError, match="no transparency log entry"):
        verify_v3(v3_bundle, staging_root)


def test_bundle_of_unknown_media_type_is_refused(staging_root, v3_bundle):
    v3_bundle["mediaType"] = "application/json"
    with pytest.raises(KeylessError, match="mediaType 'application/json', not a Sigstore bundle"):
        verify_v3(v3_bundle, staging_root)


def test_what_prefixes_every_refusal(staging_root, v3_bundle):
    with pytest.raises(KeylessError, match="^signature of registry.example/app@sha256:ab: the signature does not verify"):
        verify_keyless(v3_bundle, b"other", message_signature(v3_bundle), staging_root, what="signature of registry.example/app@sha256:ab")


def test_trust_root_file_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "trusted_root.json"
    path.write_text("this is not json\n")
    with pytest.raises(KeylessError, match="trust root file .*trusted_root.json is not JSON"):
        load_trust_root(str(path))
    with pytest.raises(KeylessError, match="cannot read the trust root file"):
        load_trust_root(str(tmp_path / "missing.json"))
    with pytest.raises(KeylessError, match="trust root text is not JSON"):
        load_trust_root('{"mediaType": ')


def test_trust_root_of_another_media_type_is_refused():
    with pytest.raises(KeylessError, match="mediaType 'application/json', not a sigstore trusted root"):
        load_trust_root('{"mediaType": "application/json"}')
    with pytest.raises(KeylessError, match="is not a JSON object"):
        load_trust_root(b"[1, 2]")


def test_keyless_error_is_an_image_error():
    assert issubclass(KeylessError, ImageError)


# ---------------------------------------------------------------- without cryptography


def test_missing_cryptography_is_a_clear_refusal(monkeypatch):
    monkeypatch.setattr(keyless._Crypto, "loaded", None)
    monkeypatch.setitem(sys.modules, "cryptography", None)
    with pytest.raises(KeylessError, match="install the Python library 'cryptography'"):
        load_trust_root(fixture_path("trusted_root.staging.json"))
    with pytest.raises(KeylessError, match="needs the Python library 'cryptography'"):
        verify_keyless({}, b"", b"", None)


def test_module_imports_without_cryptography():
    build = os.path.dirname(list(ansible_collections.__path__)[0])
    code = ("import sys; sys.modules['cryptography'] = None\n"
            "from ansible_collections.airgap.images.plugins.module_utils import keyless\n"
            "print(keyless.bundle_certificate({'verificationMaterial': {'certificate': {'rawBytes': 'AAEC'}}}).hex())\n")
    done = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=build), capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "000102"


# ---------------------------------------------------------------- Merkle audit paths


def tree_hash(leaves):
    """RFC 6962 section 2.1 MTH, written independently of the module."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    return hashlib.sha256(b"\x01" + tree_hash(leaves[:split]) + tree_hash(leaves[split:])).digest()


def audit_path(index, leaves):
    """RFC 6962 section 2.1.1 PATH(m, D[n])."""
    if len(leaves) == 1:
        return []
    split = 1
    while split * 2 < len(leaves):
        split *= 2
    if index < split:
        return audit_path(index, leaves[:split]) + [tree_hash(leaves[split:])]
    return audit_path(index - split, leaves[split:]) + [tree_hash(leaves[:split])]


@pytest.mark.parametrize("size", range(1, 12))
def test_merkle_root_from_every_audit_path(size):
    leaves = [hashlib.sha256(b"\x00" + bytes([number])).digest() for number in range(size)]
    root = tree_hash(leaves)
    for index in range(size):
        path = audit_path(index, leaves)
        assert merkle_root_from_path(index, size, leaves[index], path) == root
        assert merkle_root_from_path(index, size, leaves[index], path + [root]) is None
        if path:
            assert merkle_root_from_path(index, size, leaves[index], path[:-1]) != root
    assert merkle_root_from_path(size, size, leaves[0], []) is None


# ---------------------------------------------------------------- a test PKI of our own

NOW = datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LOG_ORIGIN = "rekor.test.invalid - 1234"


def new_key(kind):
    if kind == "ec256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def sign_with(key, data):
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return key.sign(data)


def cert_hash(key):
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def spki(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def der_utf8(text):
    data = text.encode("utf-8")
    return b"\x0c" + bytes([len(data)]) + data


def name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "airgap.test"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def ca_certificate(subject, key, issuer_name, issuer_key, path_length=1, is_ca=True):
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(NOW - datetime.timedelta(days=365))
               .not_valid_after(NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=path_length if is_ca else None), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=not is_ca, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                            key_agreement=False, key_cert_sign=is_ca, crl_sign=is_ca, encipher_only=False, decipher_only=False),
                              critical=True))
    return builder.sign(issuer_key, cert_hash(issuer_key))


class Pki(object):
    """Root and intermediate CA, a Rekor-like log and optionally a CT log."""

    def __init__(self, ca_kind="ec384", log_kind="ec256"):
        self.root_key, self.intermediate_key = new_key(ca_kind), new_key(ca_kind)
        self.root = ca_certificate(name("test root"), self.root_key, name("test root"), self.root_key)
        self.intermediate = ca_certificate(name("test intermediate"), self.intermediate_key, self.root.subject, self.root_key, path_length=0)
        self.log_key = new_key(log_kind)
        self.log_id = hashlib.sha256(spki(self.log_key.public_key())).digest()
        self.ct_key = new_key("ec256")
        self.ct_log_id = hashlib.sha256(spki(self.ct_key.public_key())).digest()

    def leaf(self, leaf_key, identity="signer@example.test", issuer_url="https://issuer.example.test", legacy_issuer_only=False,
             not_before=None, lifetime=datetime.timedelta(minutes=10), with_sct=False, sct_log_key=None, signer=None):
        signer_cert, signer_key = signer or (self.intermediate, self.intermediate_key)
        not_before = not_before or NOW - datetime.timedelta(minutes=1)
        san = x509.UniformResourceIdentifier(identity) if "://" in identity else x509.RFC822Name(identity)
        builder = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(signer_cert.subject).public_key(leaf_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_before + lifetime)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=False, crl_sign=False, encipher_only=False, decipher_only=False),
                                  critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
                   .add_extension(x509.SubjectAlternativeName([san]), critical=True)
                   .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1"), issuer_url.encode()), critical=False))
        if not legacy_issuer_only:
            builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8"), der_utf8(issuer_url)),
                                            critical=False)
        if with_sct:
            precert = builder.sign(signer_key, cert_hash(signer_key))
            sct = self.sct(precert.tbs_certificate_bytes, signer_cert, sct_log_key or self.ct_key)
            builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2"), sct), critical=False)
        return builder.sign(signer_key, cert_hash(signer_key))

    @staticmethod
    def sct(tbs, issuer, ct_key):
        """An SCT list extension value over the precertificate TBS (RFC 6962 sections 3.2 and 3.3)."""
        milliseconds = int(NOW.timestamp() * 1000) - 30000
        issuer_key_hash = hashlib.sha256(spki(issuer.public_key())).digest()
        signed = (b"\x00\x00" + milliseconds.to_bytes(8, "big") + b"\x00\x01" + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs + b"\x00\x00")
        signature = ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(spki(ct_key.public_key())).digest()
        serialized = b"\x00" + log_id + milliseconds.to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03" + len(signature).to_bytes(2, "big") + signature
        listed = len(serialized).to_bytes(2, "big") + serialized
        sct_list = len(listed).to_bytes(2, "big") + listed
        return b"\x04" + bytes([len(sct_list)]) + sct_list if len(sct_list) < 128 else b"\x04\x81" + bytes([len(sct_list)]) + sct_list

    def trust_root(self, with_ct_log=False, authorities=None):
        def log(base_url, key, log_id):
            return {"baseUrl": base_url, "hashAlgorithm": "SHA2_256", "logId": {"keyId": b64(log_id)},
                    "publicKey": {"rawBytes": b64(spki(key.public_key())), "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                                  "validFor": {"start": "2020-01-01T00:00:00Z"}}}
        chain = authorities or [self.intermediate, self.root]
        document = {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.2",
            "tlogs": [log("https://rekor.test.invalid", self.log_key, self.log_id)],
            "certificateAuthorities": [{"subject": {"organization": "airgap.test", "commonName": "test"}, "uri": "https://fulcio.test.invalid",
                                        "certChain": {"certificates": [{"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))} for cert in chain]},
                                        "validFor": {"start": "2020-01-01T00:00:00.000Z"}}],
            "ctlogs": [log("https://ctfe.test.invalid", self.ct_key, self.ct_log_id)] if with_ct_log else [],
        }
        return load_trust_root(json.dumps(document))

    def tlog_entry(self, body, integrated_time, log_index=7, with_set=True, with_proof=True, tree_size=5, checkpoint_root=None):
        entry = {"logIndex": str(log_index), "logId": {"keyId": b64(self.log_id)}, "kindVersion": {"kind": json.loads(body)["kind"], "version": "0.0.1"},
                 "integratedTime": str(integrated_time), "canonicalizedBody": b64(body)}
        if with_set:
            canonical = json.dumps({"body": b64(body), "integratedTime": integrated_time, "logID": self.log_id.hex(), "logIndex": log_index},
                                   sort_keys=True, separators=(",", ":")).encode()
            entry["inclusionPromise"] = {"signedEntryTimestamp": b64(sign_with(self.log_key, canonical))}
        if with_proof:
            entry["inclusionProof"] = self.inclusion_proof(body, tree_size, checkpoint_root)
        return entry

    def inclusion_proof(self, body, tree_size, checkpoint_root=None):
        index = tree_size - 2 if tree_size > 1 else 0
        leaves = [hashlib.sha256(b"\x00" + b"other entry %d" % number).digest() for number in range(tree_size)]
        leaves[index] = hashlib.sha256(b"\x00" + body).digest()
        root = tree_hash(leaves)
        return {"logIndex": str(index), "treeSize": str(tree_size), "rootHash": b64(root), "hashes": [b64(item) for item in audit_path(index, leaves)],
                "checkpoint": {"envelope": self.checkpoint(tree_size, checkpoint_root or root)}}

    def checkpoint(self, tree_size, root, signed_at=NOW + datetime.timedelta(seconds=2)):
        note = "%s\n%d\n%s\n" % (LOG_ORIGIN, tree_size, b64(root))
        if signed_at is not None:
            note += "Timestamp: %d\n" % (int(signed_at.timestamp()) * 10 ** 9 + 123456789)
        signature = sign_with(self.log_key, note.encode())
        return note + "\n\u2014 %s %s\n" % (LOG_ORIGIN.split(" ", maxsplit=1)[0], b64(self.log_id[:4] + signature))


def hashedrekord_body(signature, leaf, artifact):
    pem = leaf.public_bytes(serialization.Encoding.PEM)
    body = {"apiVersion": "0.0.1", "kind": "hashedrekord",
            "spec": {"data": {"hash": {"algorithm": "sha256", "value": hashlib.sha256(artifact).hexdigest()}},
                     "signature": {"content": b64(signature), "publicKey": {"content": b64(pem)}}}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def dsse_body(signature, leaf):
    body = {"apiVersion": "0.0.1", "kind": "dsse",
            "spec": {"envelopeHash": {"algorithm": "sha256", "value": "00" * 32}, "payloadHash": {"algorithm": "sha256", "value": "00" * 32},
                     "signatures": [{"signature": b64(signature), "verifier": b64(leaf.public_bytes(serialization.Encoding.PEM))}]}}
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def keyless_bundle(pki, leaf, signature, artifact, integrated_time=None, chain=None, body=None, **entry_options):
    integrated_time = int(NOW.timestamp()) if integrated_time is None else integrated_time
    body = body or hashedrekord_body(signature, leaf, artifact)
    certificates = [leaf] + (chain or [])
    material = {"tlogEntries": [pki.tlog_entry(body, integrated_time, **entry_options)]}
    if chain:
        material["x509CertificateChain"] = {"certificates": [{"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))} for cert in certificates]}
        media_type = "application/vnd.dev.sigstore.bundle+json;version=0.1"
    else:
        material["certificate"] = {"rawBytes": b64(leaf.public_bytes(serialization.Encoding.DER))}
        media_type = "application/vnd.dev.sigstore.bundle.v0.3+json"
    return {"mediaType": media_type, "verificationMaterial": material,
            "messageSignature": {"messageDigest": {"algorithm": "SHA2_256", "digest": b64(hashlib.sha256(artifact).digest())}, "signature": b64(signature)}}


@pytest.fixture(scope="module")
def pki():
    return Pki()


ARTIFACT = b"an image manifest digest, say\n"


def signed_bundle(pki, leaf_kind="ec256", leaf_options=None, **bundle_options):
    leaf_key = new_key(leaf_kind)
    leaf = pki.leaf(leaf_key, **(leaf_options or {}))
    signature = sign_with(leaf_key, ARTIFACT)
    return keyless_bundle(pki, leaf, signature, ARTIFACT, **bundle_options), signature


@pytest.mark.parametrize("leaf_kind", ["ec256", "ec384", "rsa", "ed25519"])
@pytest.mark.parametrize("ca_kind", ["ec384", "rsa", "ed25519"])
def test_own_pki_key_types_verify(leaf_kind, ca_kind):
    pki = Pki(ca_kind=ca_kind, log_kind="ed25519" if ca_kind == "ed25519" else "ec256")
    bundle, signature = signed_bundle(pki, leaf_kind)
    result = verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())
    assert result == {"identity": "signer@example.test", "issuer": "https://issuer.example.test", "certificate_authority": "https://fulcio.test.invalid",
                      "integrated_time": int(NOW.timestamp()), "log_index": 7, "log_id": pki.log_id.hex(), "log_url": "https://rekor.test.invalid",
                      "log_proof": "signed entry timestamp and inclusion proof", "sct": SCT_NOT_CHECKED}


@pytest.mark.parametrize("tree_size", [1, 2, 5, 8])
def test_inclusion_proof_only_entry_verifies(pki, tree_size):
    bundle, signature = signed_bundle(pki, with_set=False, tree_size=tree_size)
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())["log_proof"] == "inclusion proof"


def test_inclusion_proof_only_with_untimed_or_late_checkpoint_is_refused(pki):
    bundle, signature = signed_bundle(pki, with_set=False)
    proof = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["checkpoint"]["envelope"] = pki.checkpoint(int(proof["treeSize"]), base64.b64decode(proof["rootHash"]), signed_at=None)
    with pytest.raises(KeylessError, match="checkpoint has no signed timestamp, so its integratedTime is not authenticated"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())
    # A key used after its certificate expired: integratedTime claims a time inside the validity, the signed checkpoint says later.
    late = NOW + datetime.timedelta(hours=1)
    proof["checkpoint"]["envelope"] = pki.checkpoint(int(proof["treeSize"]), base64.b64decode(proof["rootHash"]), signed_at=late)
    with pytest.raises(KeylessError, match="checkpoint was signed at 2024-05-01T13:00:00Z, not between its integratedTime"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_set_only_entry_verifies(pki):
    bundle, signature = signed_bundle(pki, with_proof=False)
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())["log_proof"] == "signed entry timestamp"


def test_entry_without_any_proof_is_refused(pki):
    bundle, signature = signed_bundle(pki, with_proof=False, with_set=False)
    with pytest.raises(KeylessError, match="not proven to be in the log: it has neither an inclusion promise nor an inclusion proof"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_inclusion_proof_without_checkpoint_needs_the_set(pki):
    bundle, signature = signed_bundle(pki, with_set=False)
    del bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]["checkpoint"]
    with pytest.raises(KeylessError, match="inclusion proof has no signed checkpoint"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_checkpoint_for_another_root_is_refused(pki):
    bundle, signature = signed_bundle(pki, checkpoint_root=b"\x22" * 32)
    with pytest.raises(KeylessError, match="checkpoint root hash .* does not match the inclusion proof's rootHash"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_checkpoint_signed_by_another_key_is_refused(pki):
    other = Pki()
    bundle, signature = signed_bundle(pki, with_set=False)
    proof = bundle["verificationMaterial"]["tlogEntries"][0]["inclusionProof"]
    proof["checkpoint"]["envelope"] = other.checkpoint(int(proof["treeSize"]), base64.b64decode(proof["rootHash"]))
    with pytest.raises(KeylessError, match="checkpoint signature does not verify with the key of log https://rekor.test.invalid"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_certificate_expired_before_integrated_time_is_refused(pki):
    bundle, signature = signed_bundle(pki, integrated_time=int(NOW.timestamp()) + 3600)
    with pytest.raises(KeylessError, match="integrated at 2024-05-01T13:00:00Z, outside the signing certificate's validity"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_certificate_not_yet_valid_at_integrated_time_is_refused(pki):
    bundle, signature = signed_bundle(pki, leaf_options={"not_before": NOW + datetime.timedelta(minutes=5)})
    with pytest.raises(KeylessError, match="outside the signing certificate's validity"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_intermediate_from_the_bundle_chain_is_used(pki):
    bundle, signature = signed_bundle(pki, chain=[pki.intermediate])
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root(authorities=[pki.root]))["identity"] == "signer@example.test"
    bundle_without_chain, signature = signed_bundle(pki)
    with pytest.raises(KeylessError, match="no certificate named .*test intermediate"):
        verify_keyless(bundle_without_chain, ARTIFACT, signature, pki.trust_root(authorities=[pki.root]))


def test_impostor_ca_with_the_same_name_is_refused(pki):
    impostor = Pki()
    bundle, signature = signed_bundle(impostor)
    with pytest.raises(KeylessError, match="does not chain .*signature on .* does not verify with the key of .*test intermediate"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_issuer_that_is_not_a_ca_is_refused(pki):
    not_ca_key = new_key("ec256")
    not_ca = ca_certificate(name("not a ca"), not_ca_key, pki.root.subject, pki.root_key, is_ca=False)
    bundle, signature = signed_bundle(pki, leaf_options={"signer": (not_ca, not_ca_key)}, chain=[not_ca])
    with pytest.raises(KeylessError, match="not a certificate authority \\(basic constraints CA:FALSE\\)"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_dsse_body_verifies_and_names_the_signature(pki):
    leaf_key = new_key("ec256")
    leaf = pki.leaf(leaf_key, identity="https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main", legacy_issuer_only=True)
    envelope = {"payloadType": "application/vnd.in-toto+json", "payload": b64(b'{"_type":"https://in-toto.io/Statement/v1"}')}
    pae = dsse_pae(envelope)
    signature = sign_with(leaf_key, pae)
    bundle = keyless_bundle(pki, leaf, signature, pae, body=dsse_body(signature, leaf))
    result = verify_keyless(bundle, pae, signature, pki.trust_root())
    assert result["identity"] == "https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main"
    assert result["issuer"] == "https://issuer.example.test"
    other_signature = sign_with(leaf_key, pae)
    with pytest.raises(KeylessError, match="body does not record this signature"):
        verify_keyless(bundle, pae, other_signature, pki.trust_root())


def test_unknown_rekor_kind_is_refused(pki):
    leaf_key = new_key("ec256")
    leaf = pki.leaf(leaf_key)
    signature = sign_with(leaf_key, ARTIFACT)
    body = json.dumps({"apiVersion": "0.0.1", "kind": "rekord", "spec": {}}).encode()
    bundle = keyless_bundle(pki, leaf, signature, ARTIFACT, body=body)
    with pytest.raises(KeylessError, match="of kind 'rekord' version '0.0.1'; only hashedrekord 0.0.1, dsse 0.0.1 and intoto 0.0.2"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_leaf_without_code_signing_is_refused(pki):
    leaf_key = new_key("ec256")
    leaf = ca_certificate(x509.Name([]), leaf_key, pki.intermediate.subject, pki.intermediate_key, is_ca=False)
    signature = sign_with(leaf_key, ARTIFACT)
    bundle = keyless_bundle(pki, leaf, signature, ARTIFACT)
    with pytest.raises(KeylessError, match="not for code signing"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())


def test_own_sct_verifies_and_is_required_when_ct_logs_are_listed(pki):
    bundle, signature = signed_bundle(pki, leaf_options={"with_sct": True})
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root(with_ct_log=True))["sct"] == "verified"
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())["sct"] == SCT_NOT_CHECKED
    bundle_without_sct, signature = signed_bundle(pki)
    with pytest.raises(KeylessError, match="has no embedded SCT, but the trust root lists CT logs"):
        verify_keyless(bundle_without_sct, ARTIFACT, signature, pki.trust_root(with_ct_log=True))


def test_sct_from_an_unlisted_ct_log_is_refused(pki):
    bundle, signature = signed_bundle(pki, leaf_options={"with_sct": True, "sct_log_key": new_key("ec256")})
    with pytest.raises(KeylessError, match="SCT from CT log .*, which the trust root does not list"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root(with_ct_log=True))


def test_verify_keyless_needs_a_loaded_trust_root(pki):
    bundle, signature = signed_bundle(pki)
    with pytest.raises(KeylessError, match="the trust root must come from load_trust_root"):
        verify_keyless(bundle, ARTIFACT, signature, {"mediaType": "x"})


def test_second_tlog_entry_is_tried_when_the_first_is_from_an_unknown_log(pki):
    bundle, signature = signed_bundle(pki)
    stranger = copy.deepcopy(bundle["verificationMaterial"]["tlogEntries"][0])
    stranger["logId"]["keyId"] = b64(b"\x01" * 32)
    bundle["verificationMaterial"]["tlogEntries"].insert(0, stranger)
    assert verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())["log_index"] == 7
    bundle["verificationMaterial"]["tlogEntries"][1]["logId"]["keyId"] = b64(b"\x02" * 32)
    with pytest.raises(KeylessError, match="no transparency log entry verifies: transparency log entry 0 .*; transparency log entry 1"):
        verify_keyless(bundle, ARTIFACT, signature, pki.trust_root())
