# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline verification of cosign signatures over an image's manifest (or index) digest.

An image passes when at least one signature attached to one of its digests verifies with one of the public keys
given and its signed payload names that digest: cosign's simple-signing payload (tag ``sha256-<hex>.sig``; the
signature is over the payload blob) or cosign 3's Sigstore bundle (a referrer; a DSSE envelope whose in-toto
statement has the predicate type ``https://sigstore.dev/cosign/sign/v1`` and the digest as its subject; the signature
is over the DSSE pre-authentication encoding). What an annotation says is never trusted: kind and digest come from
the signed bytes. Keyless signatures (a Fulcio certificate instead of a key) verify only against a Sigstore trust
root the user gives, with the identities the user names (``keyless``).

As cosign does, the repository a signature names (``docker-reference``) is reported, not required to match: images
are signed where they are built and verified where they were copied to. ``cryptography`` is imported only here, and
only when a check is asked for.
"""

import base64
import hashlib
import json
import os

from .attachments import (ANNOTATION_COSIGN_BUNDLE, ANNOTATION_COSIGN_CERTIFICATE, ANNOTATION_COSIGN_CHAIN, ANNOTATION_COSIGN_SIGNATURE,
                          MEDIA_SIGSTORE_BUNDLE_PREFIX, MEDIA_SIMPLE_SIGNING, PREDICATE_COSIGN_SIGN)
from .errors import ImageError

MAX_SIGNATURE_BLOB = 4 * 1024 * 1024
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
SIMPLE_SIGNING_TYPE = "cosign container image signature"

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    CRYPTOGRAPHY_ERROR = None
except ImportError as err:  # only a signature check needs it
    CRYPTOGRAPHY_ERROR = err


class SignatureError(ImageError):
    """A key, trust root or policy that cannot be used (the task's input), as opposed to an image that is refused."""


class SignatureRefusedError(ImageError):
    """Images whose signatures do not pass; ``verdicts`` says why for each image checked."""

    def __init__(self, message, verdicts):
        ImageError.__init__(self, message)
        self.verdicts = verdicts


def cryptography_missing():
    return CRYPTOGRAPHY_ERROR is not None


def cryptography_needed(params):
    """True when a module's options ask for a signature check and the host lacks ``cryptography`` (missing_required_lib then)."""
    return bool(params.get("signed_by") or params.get("sigstore_trust_root")) and cryptography_missing()


def signature_policy(params):
    """The signature policy a module's options ask for, or None."""
    return policy_from_options(params.get("signed_by"), params.get("sigstore_trust_root"), params.get("sigstore_identities"))


class PublicKey:
    """A verification key: ECDSA (P-256, P-384), RSA or Ed25519, known by cosign's key id (the base64 sha256 of its
    DER SubjectPublicKeyInfo, the ``hint`` of a Sigstore bundle)."""

    def __init__(self, key, name):
        self.key = key
        self.name = name
        der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")

    def verifies(self, signature, data):
        return public_key_verifies(self.key, signature, data)


def public_key_verifies(key, signature, data):
    """Whether ``signature`` over ``data`` verifies with ``key`` (ECDSA with its curve's hash, RSA PKCS#1 v1.5 or PSS
    with SHA-256, Ed25519)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            digest = hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, rsa.RSAPublicKey):
            return _rsa_verifies(key, signature, data)
        else:
            key.verify(signature, data)
        return True
    except (InvalidSignature, ValueError):
        return False


def _rsa_verifies(key, signature, data):
    for scheme in (padding.PKCS1v15(), padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)):
        try:
            key.verify(signature, data, scheme, hashes.SHA256())
            return True
        except InvalidSignature:
            continue
    return False


def load_public_keys(items):
    """The keys ``items`` give: each a PEM file's path or PEM text. A file that is not a usable public key is an error
    naming it."""
    if CRYPTOGRAPHY_ERROR is not None:
        raise SignatureError("verifying signatures needs the Python library 'cryptography' (%s)" % CRYPTOGRAPHY_ERROR)
    keys = []
    for position, item in enumerate(items, 1):
        text, name = _pem_and_name(item, position)
        try:
            key = serialization.load_pem_public_key(text)
        except ValueError as err:
            raise SignatureError("%s is not a PEM public key (%s); give the .pub file cosign generate-key-pair wrote"
                                 % (name, str(err).split("\n", maxsplit=1)[0] or "unreadable")) from None
        if not _supported(key):
            raise SignatureError("%s is a %s key; signed_by takes ECDSA P-256/P-384, RSA or Ed25519 public keys"
                                 % (name, type(key).__name__))
        keys.append(PublicKey(key, name))
    return keys


def _pem_and_name(item, position):
    if "-----BEGIN" in item:
        return item.strip().encode("ascii", "replace") + b"\n", "signed_by key %d" % position
    try:
        with open(os.path.expanduser(item), "rb") as handle:
            return handle.read(64 * 1024), item
    except OSError as err:
        raise SignatureError("cannot read the public key %s: %s" % (item, err.strerror)) from None


def _supported(key):
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.name in ("secp256r1", "secp384r1")
    return isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey))


class SignaturePolicy:
    """What a signature must verify with: public keys, and for keyless signatures a trust root and identities."""

    def __init__(self, keys=(), keyless=None):
        self.keys = list(keys)
        self.keyless = keyless
        if not self.keys and keyless is None:
            raise SignatureError("a signature check needs at least one public key (signed_by) or a Sigstore trust root")

    def key_by_id(self, key_id):
        return next((key for key in self.keys if key.key_id == key_id), None)


def policy_from_options(signed_by, trust_root=None, identities=None):
    """The policy for a task's ``signed_by``, ``sigstore_trust_root`` and ``sigstore_identities``; None when none is set."""
    if not signed_by and not trust_root:
        return None
    keyless = None
    if trust_root:
        keyless = KeylessPolicy(trust_root, identities or [])
    elif identities:
        raise SignatureError("sigstore_identities needs sigstore_trust_root: a certificate's identity means nothing "
                             "without the authority that issued it")
    return SignaturePolicy(load_public_keys(signed_by or []), keyless)


class KeylessPolicy:
    """Keyless signatures verified offline: the certificate against a Sigstore trust root (keyless.py), its identity
    against the signers named."""

    def __init__(self, trust_root, identities):
        from .keyless import load_trust_root  # pylint: disable=import-outside-toplevel
        if not identities:
            raise SignatureError("sigstore_trust_root needs sigstore_identities (issuer and subject): a certificate from "
                                 "the trust root's authority proves who signed, not that they may")
        self.trust_root = load_trust_root(trust_root)
        self.identities = [(identity["issuer"], identity["subject"]) for identity in identities]

    def verify(self, signed_bytes, signature, certificate, chain, legacy_bundle, bundle, refused):
        from .keyless import KeylessError, verify_keyless  # pylint: disable=import-outside-toplevel
        try:
            bundle = bundle if bundle is not None else legacy_as_bundle(certificate, chain, legacy_bundle)
            found = verify_keyless(bundle, signed_bytes, signature, self.trust_root)
        except KeylessError as err:
            raise refused("keyless signature refused: %s" % err) from None
        signer = {"identity": found["identity"], "issuer": found["issuer"], "key": "sigstore_trust_root"}
        if (found["issuer"], found["identity"]) not in self.identities:
            raise refused("keyless signature by %s (issuer %s), who is none of sigstore_identities" % (found["identity"], found["issuer"]),
                          **signer)
        return signer


def legacy_as_bundle(certificate, chain, legacy_bundle):
    """cosign's keyless ``.sig`` annotations (the certificate and chain in PEM, Rekor's signed entry timestamp) as the
    Sigstore bundle they amount to."""
    from .keyless import KeylessError  # pylint: disable=import-outside-toplevel
    try:
        ders = [base64.b64encode(der).decode("ascii") for der in _pem_ders(certificate) + _pem_ders(chain or "")]
        rekor = json.loads(legacy_bundle) if legacy_bundle else None
        entries = []
        if rekor is not None:
            payload = rekor["Payload"]
            entries.append({"logIndex": str(payload["logIndex"]), "integratedTime": str(payload["integratedTime"]),
                            "logId": {"keyId": base64.b64encode(bytes.fromhex(payload["logID"])).decode("ascii")},
                            "inclusionPromise": {"signedEntryTimestamp": rekor["SignedEntryTimestamp"]},
                            "canonicalizedBody": payload["body"]})
    except (ValueError, KeyError, TypeError) as err:
        raise KeylessError("cosign's keyless annotations cannot be read (%s)" % err) from None
    if not ders:
        raise KeylessError("the certificate annotation holds no PEM certificate")
    return {"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1",
            "verificationMaterial": {"x509CertificateChain": {"certificates": [{"rawBytes": der} for der in ders]},
                                     "tlogEntries": entries}}


def _pem_ders(text):
    blocks = text.split("-----BEGIN CERTIFICATE-----")[1:]
    return [base64.b64decode("".join(block.split("-----END CERTIFICATE-----")[0].split())) for block in blocks]


# Checking images ---------------------------------------------------------------------------------------------

def check_images(images, policy):
    """A verdict per image (its digest, whether it passes, every signature looked at and what came of it)."""
    return [check_image(image, policy) for image in images]


def refuse_unsigned(images, policy, what="loaded"):
    """The verdicts; SignatureRefusedError naming every image that does not pass (so that nothing is ``what``)."""
    verdicts = check_images(images, policy)
    refused = [verdict for verdict in verdicts if not verdict["verified"]]
    if refused:
        raise SignatureRefusedError("signature check refused %d of %d image(s), nothing was %s: %s" % (
            len(refused), len(verdicts), what, "; ".join("%s (%s): %s" % (v["image"], v["digest"], v["reason"]) for v in refused)),
            verdicts)
    return verdicts


def check_image(image, policy):
    targets = [digest for digest in (image.manifest_digest, image.index_digest) if digest]
    verdict = {"image": image.describe(), "id": image.id, "digest": image.digest, "verified": False, "signatures": []}
    if not targets:
        verdict["reason"] = ("no manifest digest to check signatures against (the image came without a manifest, or "
                             "was converted); save it from a registry, containerd or an OCI layout")
        return verdict
    for artifact in image.referrers:
        if artifact.kind == "signature" and artifact.subject in targets:
            verdict["signatures"].extend(check_artifact(artifact, policy))
    verdict["verified"] = any(check["verified"] for check in verdict["signatures"])
    verdict["reason"] = None if verdict["verified"] else _refusal_reason(verdict["signatures"])
    return verdict


def _refusal_reason(checks):
    if not checks:
        return "no signature: the archive carries none for its digest (save it with referrers: true from where it is signed)"
    return "; ".join(sorted({check["reason"] for check in checks}))


def check_artifact(artifact, policy):
    """One check per signature a signature artifact holds (a ``.sig`` manifest may hold several)."""
    manifest = artifact.manifest.json()
    checks = []
    for layer in manifest.get("layers") or []:
        media_type = layer.get("mediaType") or ""
        if media_type == MEDIA_SIMPLE_SIGNING:
            checks.append(_checked(artifact, "simple-signing", lambda layer=layer: _simple_signing(artifact, layer, policy)))
        elif media_type.startswith(MEDIA_SIGSTORE_BUNDLE_PREFIX):
            checks.append(_checked(artifact, "sigstore-bundle", lambda layer=layer: _sigstore_bundle(artifact, layer, policy)))
    if not checks:
        checks.append(_check_entry(artifact, "unknown", reason="%s holds no simple-signing payload or Sigstore bundle" % artifact.id[:19]))
    return checks


def _check_entry(artifact, signature_format, reason=None, **found):
    entry = {"digest": artifact.id, "tag": artifact.tag, "format": signature_format, "signed_digest": None,
             "docker_reference": None, "key_id": None, "key": None, "identity": None, "issuer": None,
             "verified": reason is None}
    entry.update(found)
    entry["reason"] = reason
    return entry


class _Refused(Exception):
    def __init__(self, reason, **found):
        Exception.__init__(self, reason)
        self.found = found


def _checked(artifact, signature_format, check):
    try:
        return _check_entry(artifact, signature_format, **check())
    except _Refused as refused:
        return _check_entry(artifact, signature_format, reason=str(refused), **refused.found)


def _blob_bytes(artifact, descriptor, what):
    blob = artifact.blob(descriptor.get("digest"))
    if blob is None:
        raise _Refused("%s %s did not travel with the signature" % (what, str(descriptor.get("digest"))[:19]))
    if not isinstance(blob.size, int) or blob.size > MAX_SIGNATURE_BLOB:
        raise _Refused("%s is larger than %d bytes: not a signature" % (what, MAX_SIGNATURE_BLOB))
    try:
        with blob.open() as stream:
            return stream.read()
    except ImageError as err:
        raise _Refused("%s cannot be read: %s" % (what, err)) from None


def _json(data, what):
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _Refused("%s is not JSON (truncated or corrupt)" % what) from None
    if not isinstance(value, dict):
        raise _Refused("%s is not a JSON object" % what)
    return value


def _base64(text, what):
    try:
        return base64.b64decode(text or "", validate=True)
    except (ValueError, TypeError):
        raise _Refused("%s is not base64" % what) from None


# cosign's simple signing (tag sha256-<hex>.sig) ----------------------------------------------------------------

def _simple_signing(artifact, layer, policy):
    annotations = layer.get("annotations") or {}
    payload = _blob_bytes(artifact, layer, "the simple-signing payload")
    signature = _base64(annotations.get(ANNOTATION_COSIGN_SIGNATURE), "the signature annotation")
    if not signature:
        raise _Refused("the payload has no signature annotation (%s)" % ANNOTATION_COSIGN_SIGNATURE)
    found = _signer(policy, payload, signature, certificate=annotations.get(ANNOTATION_COSIGN_CERTIFICATE),
                    chain=annotations.get(ANNOTATION_COSIGN_CHAIN), legacy_bundle=annotations.get(ANNOTATION_COSIGN_BUNDLE))
    document = _json(payload, "the simple-signing payload")
    critical = document.get("critical") if isinstance(document.get("critical"), dict) else {}
    found["signed_digest"] = (critical.get("image") or {}).get("docker-manifest-digest")
    found["docker_reference"] = (critical.get("identity") or {}).get("docker-reference")
    if critical.get("type") != SIMPLE_SIGNING_TYPE:
        raise _Refused("the payload's type is %r, not %r" % (critical.get("type"), SIMPLE_SIGNING_TYPE), **found)
    _check_signed_digest(found["signed_digest"], artifact.subject, found)
    return found


def _check_signed_digest(signed, subject, found):
    if signed != subject:
        raise _Refused("the signed payload is for %s, not for this image's %s (a signature moved from another image)"
                       % (signed or "no digest", subject), **found)


def _signer(policy, signed_bytes, signature, key_id=None, certificate=None, chain=None, legacy_bundle=None, bundle=None):
    """Who made ``signature``: the key (or, keyless, the certificate's identity) it verifies with; _Refused if none."""
    if certificate is not None:
        if policy.keyless is None:
            raise _Refused("a keyless signature (a Fulcio certificate, no key) cannot be verified offline without the "
                           "Sigstore trust root: give sigstore_trust_root and sigstore_identities")
        return policy.keyless.verify(signed_bytes, signature, certificate, chain, legacy_bundle, bundle, _Refused)
    if key_id:
        key = policy.key_by_id(key_id)
        if key is None:
            raise _Refused("signed by an unknown key (key id %s is none of the %d keys given)" % (key_id, len(policy.keys)), key_id=key_id)
        if not key.verifies(signature, signed_bytes):
            raise _Refused("bad signature: it does not verify with %s, the key it names" % key.name, key_id=key_id, key=key.name)
        return {"key_id": key.key_id, "key": key.name}
    for key in policy.keys:
        if key.verifies(signature, signed_bytes):
            return {"key_id": key.key_id, "key": key.name}
    raise _Refused("bad signature or unknown key: it verifies with none of the %d keys given" % len(policy.keys))


# cosign 3's Sigstore bundle (a referrer) -----------------------------------------------------------------------

def _sigstore_bundle(artifact, layer, policy):
    bundle = _json(_blob_bytes(artifact, layer, "the Sigstore bundle"), "the Sigstore bundle")
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        what = "a message signature (it signs a blob)" if "messageSignature" in bundle else "no DSSE envelope"
        raise _Refused("the Sigstore bundle holds %s, not a signed statement about the image" % what)
    payload = _base64(envelope.get("payload"), "the DSSE payload")
    payload_type = envelope.get("payloadType")
    signatures = [entry for entry in envelope.get("signatures") or [] if isinstance(entry, dict)]
    if payload_type != IN_TOTO_PAYLOAD_TYPE or not signatures:
        raise _Refused("the DSSE envelope is not a signed in-toto statement (payloadType %r, %d signatures)"
                       % (payload_type, len(signatures)))
    material = bundle.get("verificationMaterial") if isinstance(bundle.get("verificationMaterial"), dict) else {}
    certificate = _bundle_certificate(material)
    key_id = (material.get("publicKey") or {}).get("hint")
    signed = dsse_pae(payload_type, payload)
    found = _signer(policy, signed, _base64(signatures[0].get("sig"), "the DSSE signature"), key_id=key_id,
                    certificate=certificate, bundle=bundle)
    statement = _json(payload, "the in-toto statement")
    if statement.get("predicateType") != PREDICATE_COSIGN_SIGN:
        raise _Refused("the signed statement is a %r attestation, not a cosign signature" % statement.get("predicateType"), **found)
    subjects = [entry for entry in statement.get("subject") or [] if isinstance(entry, dict)]
    signed_digests = ["sha256:%s" % (entry.get("digest") or {}).get("sha256") for entry in subjects]
    found["signed_digest"] = artifact.subject if artifact.subject in signed_digests else ", ".join(signed_digests) or None
    found["docker_reference"] = next((entry.get("name") for entry in subjects if entry.get("name")), None)
    _check_signed_digest(found["signed_digest"], artifact.subject, found)
    return found


def _bundle_certificate(material):
    if isinstance(material.get("certificate"), dict):
        return material["certificate"].get("rawBytes")
    chain = (material.get("x509CertificateChain") or {}).get("certificates") if isinstance(material.get("x509CertificateChain"), dict) else None
    return chain[0].get("rawBytes") if chain and isinstance(chain[0], dict) else None


def dsse_pae(payload_type, payload):
    """DSSE's pre-authentication encoding: what a DSSE signature is over."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def signer_key_id(artifact):
    """The key id a Sigstore bundle of ``artifact`` names (V(keyless) for a certificate), without verifying anything;
    None when it names none or cannot be read."""
    if not artifact.manifest or artifact.kind not in ("signature", "attestation"):
        return None
    for layer in artifact.manifest.json().get("layers") or []:
        if (layer.get("mediaType") or "").startswith(MEDIA_SIGSTORE_BUNDLE_PREFIX):
            try:
                material = _json(_blob_bytes(artifact, layer, "the Sigstore bundle"), "the Sigstore bundle").get("verificationMaterial") or {}
            except _Refused:
                return None
            return "keyless" if _bundle_certificate(material) else (material.get("publicKey") or {}).get("hint")
        if (layer.get("annotations") or {}).get(ANNOTATION_COSIGN_CERTIFICATE):
            return "keyless"
    return None
