# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Offline verification of keyless Sigstore bundles against a trust root the user supplies.

A keyless bundle carries a short-lived Fulcio certificate and a Rekor transparency log
entry. ``verify_keyless`` checks, without any network access:

* the certificate chains to a certificate authority of the trust root;
* the signature over the signed bytes verifies with the certificate's key;
* a log entry of a log in the trust root records this signature and certificate, was
  integrated while the certificate was valid, and is proven by its signed entry timestamp
  and/or its Merkle inclusion proof with a signed checkpoint. Only the signed entry timestamp
  covers ``integratedTime``: an entry proven by its inclusion proof alone is accepted when its
  checkpoint carries a signed time (Rekor v1 adds ``Timestamp:``) before the certificate expired;
* the certificate's embedded SCT, when the trust root lists CT logs.

Which identity and issuer are acceptable is the caller's policy: they are returned.
The ``cryptography`` library is imported only when needed, so this module imports without it.
"""

import base64
import binascii
import datetime
import hashlib
import json
import os
import re
import struct

from .errors import ImageError

TRUST_ROOT_MEDIA_TYPES = (
    "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
    "application/vnd.dev.sigstore.trustedroot+json;version=0.2",
)
BUNDLE_MEDIA_TYPES = (
    "application/vnd.dev.sigstore.bundle+json;version=0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json",
)
FULCIO_ISSUER_OID = "1.3.6.1.4.1.57264.1.8"
FULCIO_LEGACY_ISSUER_OID = "1.3.6.1.4.1.57264.1.1"
FULCIO_USERNAME_OID = "1.3.6.1.4.1.57264.1.7"
CODE_SIGNING_OID = "1.3.6.1.5.5.7.3.3"
SCT_NOT_CHECKED = "not checked: the trust root lists no CT logs"
SCT_VERIFIED = "verified"
SET_PROOF = "signed entry timestamp"
INCLUSION_PROOF = "inclusion proof"
UNSIGNED_PROOF = "inclusion proof without a signed checkpoint"
MAX_CHAIN_LENGTH = 8
INSTALL_CRYPTOGRAPHY = "install the Python library 'cryptography' (for example: pip install cryptography) where the verification runs"
UTC = datetime.timezone.utc
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=UTC)
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
NOTE_SIGNATURE_LINE = re.compile(r"^\u2014 (\S+) (\S+)$", re.M)
RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class KeylessError(ImageError):
    """A keyless Sigstore bundle or trust root that cannot be verified, with what failed and what to do."""


class _Crypto(object):
    """The parts of ``cryptography`` this module uses, imported on first use."""

    loaded = None

    def __init__(self, modules):
        self.exceptions, self.x509, self.hashes, self.serialization = modules[:4]
        self.ec, self.ed448, self.ed25519, self.padding, self.rsa = modules[4:]

    @classmethod
    def get(cls):
        if cls.loaded is None:
            cls.loaded = cls._load()
        return cls.loaded

    @staticmethod
    def _load():
        try:
            # pylint: disable=import-outside-toplevel
            from cryptography import exceptions, x509
            from cryptography.hazmat.primitives import hashes, serialization
            from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, padding, rsa
        except ImportError as exc:
            raise KeylessError("keyless Sigstore verification needs the Python library 'cryptography', which is not importable (%s): %s"
                               % (exc, INSTALL_CRYPTOGRAPHY)) from exc
        return _Crypto((exceptions, x509, hashes, serialization, ec, ed448, ed25519, padding, rsa))


class Window(object):
    """A validity window (``validFor``); ``end`` None means still open."""

    def __init__(self, start=None, end=None):
        self.start = start
        self.end = end

    def contains(self, moment):
        return (self.start is None or self.start <= moment) and (self.end is None or moment <= self.end)

    def describe(self):
        return "from %s to %s" % (_iso(self.start) if self.start else "the beginning", _iso(self.end) if self.end else "now (no end)")


class CertificateAuthority(object):
    """A Fulcio instance of the trust root: its certificate chain (root last) and validity."""

    def __init__(self, uri, certificates, window):
        self.uri = uri
        self.certificates = certificates
        self.window = window

    @property
    def root(self):
        return self.certificates[-1]


class TransparencyLog(object):
    """A Rekor or CT log of the trust root, known by the SHA-256 of its public key (its log ID)."""

    def __init__(self, base_url, key_id, public_key, window):
        self.base_url = base_url
        self.key_id = key_id
        self.public_key = public_key
        self.window = window


class TrustRoot(object):
    """The parsed trusted_root.json: certificate authorities, Rekor logs and CT logs."""

    def __init__(self, certificate_authorities, tlogs, ctlogs):
        self.certificate_authorities = certificate_authorities
        self.tlogs = tlogs
        self.ctlogs = ctlogs


# ---------------------------------------------------------------- small helpers


def _iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _from_unix(seconds):
    return EPOCH + datetime.timedelta(seconds=seconds)


def _parse_time(text, where):
    match = RFC3339.match(text) if isinstance(text, str) else None
    if not match:
        raise KeylessError("%s: %r is not an RFC 3339 time such as 2022-04-13T20:06:15Z" % (where, text))
    moment = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S")
    offset = match.group(3)
    if offset == "Z":
        return moment.replace(tzinfo=UTC)
    sign = 1 if offset[0] == "+" else -1
    delta = datetime.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
    return moment.replace(tzinfo=datetime.timezone(sign * delta))


def _b64decode(text, where):
    if not isinstance(text, str) or not text:
        raise KeylessError("%s is missing or not a base64 string" % where)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeylessError("%s is not valid base64: %s" % (where, exc)) from exc


def _integer(value, where):
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise KeylessError("%s is missing or not an integer (got %r)" % (where, value))
    try:
        return int(value)
    except ValueError as exc:
        raise KeylessError("%s is not an integer (got %r)" % (where, value)) from exc


def _mapping(value, where):
    if not isinstance(value, dict):
        raise KeylessError("%s is missing or not a JSON object" % where)
    return value


def _window(document, where):
    valid_for = document.get("validFor") or {}
    start = _parse_time(valid_for["start"], where + " validFor.start") if valid_for.get("start") else None
    end = _parse_time(valid_for["end"], where + " validFor.end") if valid_for.get("end") else None
    return Window(start, end)


def _cert_time(cert, name):
    aware = getattr(cert, name + "_utc", None)
    return aware if aware is not None else getattr(cert, name).replace(tzinfo=UTC)


def _cert_validity(cert):
    return Window(_cert_time(cert, "not_valid_before"), _cert_time(cert, "not_valid_after"))


def _subject(cert):
    return cert.subject.rfc4514_string() or "(empty subject)"


def _spki_der(public_key):
    crypto = _Crypto.get()
    return public_key.public_bytes(crypto.serialization.Encoding.DER, crypto.serialization.PublicFormat.SubjectPublicKeyInfo)


def _der_utf8_string(data):
    """The text of a DER UTF8String (Fulcio's issuer extension), or None if ``data`` is not one."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, offset = data[1], 2
    if length & 0x80:
        size = length & 0x7F
        length, offset = int.from_bytes(data[2:2 + size], "big"), 2 + size
    if offset + length != len(data):
        return None
    return data[offset:].decode("utf-8", "replace")


# ---------------------------------------------------------------- signatures


def _ecdsa_hashes(public_key, hash_algorithm):
    hashes = _Crypto.get().hashes
    if hash_algorithm is not None:
        return [hash_algorithm]
    by_curve = {256: hashes.SHA256(), 384: hashes.SHA384(), 521: hashes.SHA512()}
    preferred = by_curve.get(public_key.curve.key_size, hashes.SHA256())
    # sigstore-python signed with P-384 keys over SHA-256 digests: the hashedrekord digest decides.
    return [preferred] if isinstance(preferred, hashes.SHA256) else [preferred, hashes.SHA256()]


def _signature_verifies(public_key, signature, data, hash_algorithm=None, rsa_padding=None):
    """True when ``signature`` over ``data`` verifies with ``public_key`` (ECDSA, RSA, Ed25519, Ed448)."""
    crypto = _Crypto.get()
    attempts = []
    if isinstance(public_key, crypto.ec.EllipticCurvePublicKey):
        attempts = [(lambda h=h: public_key.verify(signature, data, crypto.ec.ECDSA(h))) for h in _ecdsa_hashes(public_key, hash_algorithm)]
    elif isinstance(public_key, crypto.rsa.RSAPublicKey):
        chosen_padding = rsa_padding or crypto.padding.PKCS1v15()
        attempts = [lambda: public_key.verify(signature, data, chosen_padding, hash_algorithm or crypto.hashes.SHA256())]
    elif isinstance(public_key, (crypto.ed25519.Ed25519PublicKey, crypto.ed448.Ed448PublicKey)):
        attempts = [lambda: public_key.verify(signature, data)]
    for attempt in attempts:
        try:
            attempt()
            return True
        except (crypto.exceptions.InvalidSignature, ValueError, TypeError):
            continue
    return False


def _issued_by(cert, issuer):
    """True when ``issuer``'s key signed ``cert``."""
    padding = getattr(cert, "signature_algorithm_parameters", None)
    crypto = _Crypto.get()
    rsa_padding = padding if isinstance(padding, (crypto.padding.PKCS1v15, crypto.padding.PSS)) else None
    return _signature_verifies(issuer.public_key(), cert.signature, cert.tbs_certificate_bytes, cert.signature_hash_algorithm, rsa_padding)


# ---------------------------------------------------------------- trust root


def _read_json_source(source, what):
    """(document, description) from a dict, JSON text or a path to a JSON file."""
    if isinstance(source, dict):
        return source, what
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KeylessError("the %s is not UTF-8 text: %s" % (what, exc)) from exc
    if not isinstance(source, str) or not source.strip():
        raise KeylessError("the %s must be a path to a JSON file or the JSON text, got %r" % (what, type(source).__name__))
    if source.lstrip().startswith(("{", "[")):
        text, described = source, "the %s text" % what
    else:
        described = "the %s file %s" % (what, source)
        try:
            with open(source, "rb") as handle:
                text = handle.read().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise KeylessError("cannot read %s: %s" % (described, exc)) from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise KeylessError("%s is not JSON (%s): give a sigstore trusted_root.json" % (described, exc)) from exc
    if not isinstance(document, dict):
        raise KeylessError("%s is not a JSON object: give a sigstore trusted_root.json" % described)
    return document, described


def _parse_certificate(der, where):
    crypto = _Crypto.get()
    try:
        return crypto.x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise KeylessError("%s is not a DER X.509 certificate: %s" % (where, exc)) from exc


def _parse_authority(document, where):
    uri = document.get("uri") or (document.get("subject") or {}).get("commonName") or where
    chain = _mapping(document.get("certChain"), "%s certChain" % where).get("certificates")
    if not isinstance(chain, list) or not chain:
        raise KeylessError("%s (%s) has no certChain.certificates: fix the trust root" % (where, uri))
    certificates = [_parse_certificate(_b64decode(_mapping(entry, where).get("rawBytes"), "%s certificate %d rawBytes" % (where, number)),
                                       "%s certificate %d" % (where, number))
                    for number, entry in enumerate(chain)]
    return CertificateAuthority(uri, certificates, _window(document, where))


def _parse_log(document, where):
    crypto = _Crypto.get()
    base_url = document.get("baseUrl") or where
    key_document = _mapping(document.get("publicKey"), "%s (%s) publicKey" % (where, base_url))
    raw_key = _b64decode(key_document.get("rawBytes"), "%s (%s) publicKey.rawBytes" % (where, base_url))
    try:
        public_key = crypto.serialization.load_der_public_key(raw_key)
    except (ValueError, crypto.exceptions.UnsupportedAlgorithm) as exc:
        raise KeylessError("%s (%s) publicKey.rawBytes is not a DER public key: %s" % (where, base_url, exc)) from exc
    log_id = _mapping(document.get("logId"), "%s (%s) logId" % (where, base_url)).get("keyId")
    key_id = _b64decode(log_id, "%s (%s) logId.keyId" % (where, base_url))
    return TransparencyLog(base_url, key_id, public_key, _window(key_document, "%s (%s) publicKey" % (where, base_url)))


def _parse_logs(document, field):
    entries = document.get(field) or []
    if not isinstance(entries, list):
        raise KeylessError("trust root %s is not a list" % field)
    logs = {}
    for number, entry in enumerate(entries):
        log = _parse_log(_mapping(entry, "trust root %s[%d]" % (field, number)), "trust root %s[%d]" % (field, number))
        logs.setdefault(log.key_id, []).append(log)
    return logs


def load_trust_root(text_or_path):
    """Parse a sigstore trusted_root.json given as a path, JSON text (str or bytes) or an already parsed dict."""
    _Crypto.get()
    document, described = _read_json_source(text_or_path, "trust root")
    media_type = document.get("mediaType")
    if media_type not in TRUST_ROOT_MEDIA_TYPES:
        raise KeylessError("%s has mediaType %r, not a sigstore trusted root (%s)" % (described, media_type, " or ".join(TRUST_ROOT_MEDIA_TYPES)))
    authorities = document.get("certificateAuthorities") or []
    if not isinstance(authorities, list):
        raise KeylessError("%s: certificateAuthorities is not a list" % described)
    parsed = [_parse_authority(_mapping(entry, "certificateAuthorities[%d]" % number), "trust root certificateAuthorities[%d]" % number)
              for number, entry in enumerate(authorities)]
    return TrustRoot(parsed, _parse_logs(document, "tlogs"), _parse_logs(document, "ctlogs"))


# ---------------------------------------------------------------- bundle


def _verification_material(bundle):
    if not isinstance(bundle, dict):
        raise KeylessError("the Sigstore bundle is not a JSON object (got %s): give the parsed bundle JSON" % type(bundle).__name__)
    material = bundle.get("verificationMaterial")
    if not isinstance(material, dict):
        raise KeylessError("the Sigstore bundle has no verificationMaterial: it is not a Sigstore bundle or it is truncated; fetch it again")
    return material


def _bundle_certificates_der(bundle):
    material = _verification_material(bundle)
    if isinstance(material.get("certificate"), dict):
        return [_b64decode(material["certificate"].get("rawBytes"), "bundle verificationMaterial.certificate.rawBytes")]
    chain = material.get("x509CertificateChain")
    if isinstance(chain, dict) and isinstance(chain.get("certificates"), list) and chain["certificates"]:
        return [_b64decode(_mapping(entry, "bundle certificate").get("rawBytes"), "bundle x509CertificateChain.certificates[%d].rawBytes" % number)
                for number, entry in enumerate(chain["certificates"])]
    return []


def bundle_certificate(bundle):
    """DER of the bundle's leaf certificate, or None when the bundle carries no certificate (a key-signed bundle)."""
    if isinstance(bundle, dict) and not isinstance(bundle.get("verificationMaterial"), dict):
        return None
    certificates = _bundle_certificates_der(bundle)
    return certificates[0] if certificates else None


def _check_bundle_media_type(bundle):
    media_type = bundle.get("mediaType")
    if media_type not in BUNDLE_MEDIA_TYPES:
        raise KeylessError("the bundle has mediaType %r, not a Sigstore bundle this verifier knows (%s)" % (media_type, ", ".join(BUNDLE_MEDIA_TYPES)))


# ---------------------------------------------------------------- certificate chain


def _ca_problem(cert, certs_below):
    """Why ``cert`` may not issue the certificates below it, or None."""
    crypto = _Crypto.get()
    try:
        constraints = cert.extensions.get_extension_for_class(crypto.x509.BasicConstraints).value
    except crypto.x509.ExtensionNotFound:
        return "%s has no basic constraints, so it is not a certificate authority" % _subject(cert)
    if not constraints.ca:
        return "%s is not a certificate authority (basic constraints CA:FALSE)" % _subject(cert)
    if constraints.path_length is not None and certs_below - 1 > constraints.path_length:
        return "%s allows %d intermediate(s) below it, the chain has %d" % (_subject(cert), constraints.path_length, certs_below - 1)
    try:
        usage = cert.extensions.get_extension_for_class(crypto.x509.KeyUsage).value
    except crypto.x509.ExtensionNotFound:
        return None
    return None if usage.key_cert_sign else "%s may not sign certificates (key usage lacks keyCertSign)" % _subject(cert)


def _find_issuer(cert, pool, certs_below):
    """(issuer, None) or (None, why not)."""
    named = [candidate for candidate in pool if candidate.subject == cert.issuer and candidate != cert]
    if not named:
        return None, "no certificate named %s (issuer of %s)" % (cert.issuer.rfc4514_string(), _subject(cert))
    problems = []
    for candidate in named:
        if not _issued_by(cert, candidate):
            problems.append("the signature on %s does not verify with the key of %s" % (_subject(cert), _subject(candidate)))
            continue
        problem = _ca_problem(candidate, certs_below)
        if problem is None:
            return candidate, None
        problems.append(problem)
    return None, "; ".join(problems)


def _path_to_authority(leaf, intermediates, authority):
    """(path from leaf to the authority's root, None) or (None, why not)."""
    pool = intermediates + authority.certificates
    path = [leaf]
    while len(path) <= MAX_CHAIN_LENGTH:
        if path[-1] == authority.root and len(path) > 1:
            return path, None
        issuer, problem = _find_issuer(path[-1], pool, len(path))
        if issuer is None:
            return None, problem
        path.append(issuer)
    return None, "the chain is longer than %d certificates" % MAX_CHAIN_LENGTH


def _chain_to_trust_root(leaf, intermediates, trust_root):
    if not trust_root.certificate_authorities:
        raise KeylessError("the trust root lists no certificate authority (certificateAuthorities is empty): add the Fulcio CA that issued the certificate")
    problems = []
    for authority in trust_root.certificate_authorities:
        path, problem = _path_to_authority(leaf, intermediates, authority)
        if path:
            return authority, path
        problems.append("%s: %s" % (authority.uri, problem))
    raise KeylessError("the signing certificate (issued by %s) does not chain to a certificate authority of the trust root (%s): "
                       "use the trust root of the Sigstore instance that issued it" % (leaf.issuer.rfc4514_string(), "; ".join(problems)))


def _check_chain_at(path, authority, moment):
    for cert in path[1:]:
        validity = _cert_validity(cert)
        if not validity.contains(moment):
            raise KeylessError("certificate authority certificate %s was not valid at the signing time %s (valid %s)"
                               % (_subject(cert), _iso(moment), validity.describe()))
    if not authority.window.contains(moment):
        raise KeylessError("the trust root's certificate authority %s was not valid at the signing time %s (validFor %s)"
                           % (authority.uri, _iso(moment), authority.window.describe()))


def _check_leaf_usage(leaf):
    crypto = _Crypto.get()
    try:
        constraints = leaf.extensions.get_extension_for_class(crypto.x509.BasicConstraints).value
        if constraints.ca:
            raise KeylessError("the signing certificate %s is a CA certificate, not a Fulcio signing certificate" % _subject(leaf))
    except crypto.x509.ExtensionNotFound:
        pass
    try:
        usages = leaf.extensions.get_extension_for_class(crypto.x509.ExtendedKeyUsage).value
    except crypto.x509.ExtensionNotFound:
        usages = []
    if CODE_SIGNING_OID not in [usage.dotted_string for usage in usages]:
        raise KeylessError("the signing certificate is not for code signing (its extended key usage lacks codeSigning)")


# ---------------------------------------------------------------- identity


def _other_name_text(general_name):
    if general_name.type_id.dotted_string != FULCIO_USERNAME_OID:
        return None
    return _der_utf8_string(general_name.value)


def certificate_identity(leaf):
    """The SAN Fulcio put in the certificate: an email, a URI, or a Fulcio username otherName."""
    crypto = _Crypto.get()
    try:
        names = leaf.extensions.get_extension_for_class(crypto.x509.SubjectAlternativeName).value
    except crypto.x509.ExtensionNotFound as exc:
        raise KeylessError("the signing certificate has no subject alternative name, so it names no identity") from exc
    found = names.get_values_for_type(crypto.x509.RFC822Name) + names.get_values_for_type(crypto.x509.UniformResourceIdentifier)
    found += [text for text in (_other_name_text(name) for name in names.get_values_for_type(crypto.x509.OtherName)) if text]
    if not found:
        raise KeylessError("the signing certificate's subject alternative name has no email, URI or Fulcio username")
    return found[0]


def certificate_issuer(leaf):
    """The OIDC issuer from Fulcio's extension (1.3.6.1.4.1.57264.1.8, else the legacy 1.3.6.1.4.1.57264.1.1)."""
    values = {}
    for extension in leaf.extensions:
        raw = getattr(extension.value, "value", None)
        if extension.oid.dotted_string in (FULCIO_ISSUER_OID, FULCIO_LEGACY_ISSUER_OID) and isinstance(raw, bytes):
            values[extension.oid.dotted_string] = raw
    if FULCIO_ISSUER_OID in values and _der_utf8_string(values[FULCIO_ISSUER_OID]):
        return _der_utf8_string(values[FULCIO_ISSUER_OID])
    if FULCIO_LEGACY_ISSUER_OID in values:
        return values[FULCIO_LEGACY_ISSUER_OID].decode("utf-8", "replace")
    raise KeylessError("the signing certificate names no OIDC issuer (no Fulcio extension %s or %s): it is not a Fulcio certificate"
                       % (FULCIO_ISSUER_OID, FULCIO_LEGACY_ISSUER_OID))


# ---------------------------------------------------------------- transparency log: body


def _pem_blocks(data):
    text = data.decode("ascii", "replace")
    return [(kind, base64.b64decode("".join(body.split()))) for kind, body in PEM_BLOCK.findall(text)]


def _names_certificate(pem_b64, leaf, leaf_der):
    """True when a base64 PEM field of a Rekor body is the leaf certificate or its public key."""
    try:
        blocks = _pem_blocks(base64.b64decode(pem_b64 or ""))
    except (binascii.Error, ValueError):
        return False
    for kind, der in blocks:
        if kind == "CERTIFICATE" and der == leaf_der:
            return True
        if kind == "PUBLIC KEY" and der == _spki_der(leaf.public_key()):
            return True
    return False


def _names_signature(sig_b64, signature):
    """True when a base64 signature field of a Rekor body decodes to ``signature``; intoto 0.0.2 encodes it twice."""
    try:
        decoded = base64.b64decode(sig_b64 or "")
        if decoded == signature:
            return True
        return base64.b64decode(decoded, validate=True) == signature
    except (binascii.Error, ValueError):
        return False


def _body_signatures(body, where):
    """[(signature field, certificate field)] from a hashedrekord 0.0.1, dsse 0.0.1 or intoto 0.0.2 Rekor body."""
    kind, version, spec = body.get("kind"), body.get("apiVersion"), body.get("spec") or {}
    if kind == "hashedrekord" and version == "0.0.1":
        signature = spec.get("signature") or {}
        return [(signature.get("content"), (signature.get("publicKey") or {}).get("content"))]
    if kind == "dsse" and version == "0.0.1":
        return [(item.get("signature"), item.get("verifier")) for item in spec.get("signatures") or [] if isinstance(item, dict)]
    if kind == "intoto" and version == "0.0.2":
        envelope = (spec.get("content") or {}).get("envelope") or {}
        return [(item.get("sig"), item.get("publicKey")) for item in envelope.get("signatures") or [] if isinstance(item, dict)]
    raise KeylessError("%s is of kind %r version %r; only hashedrekord 0.0.1, dsse 0.0.1 and intoto 0.0.2 are understood" % (where, kind, version))


def _check_hashedrekord_digest(body, signed_bytes, where):
    digest = ((body.get("spec") or {}).get("data") or {}).get("hash") or {}
    algorithm = digest.get("algorithm")
    if algorithm not in ("sha256", "sha384", "sha512"):
        raise KeylessError("%s records a digest of unknown algorithm %r" % (where, algorithm))
    actual = hashlib.new(algorithm, signed_bytes).hexdigest()
    if digest.get("value") != actual:
        raise KeylessError("%s records the artifact %s:%s, but the signed bytes are %s:%s: the entry is for another artifact"
                           % (where, algorithm, digest.get("value"), algorithm, actual))


def _check_body(entry, body_bytes, leaf, leaf_der, signature, signed_bytes, where):
    try:
        body = json.loads(body_bytes.decode("utf-8"))
    except ValueError as exc:
        raise KeylessError("%s canonicalizedBody is not JSON: %s" % (where, exc)) from exc
    if not isinstance(body, dict):
        raise KeylessError("%s canonicalizedBody is not a JSON object" % where)
    kind_version = entry.get("kindVersion") or {}
    if kind_version.get("kind") not in (None, body.get("kind")):
        raise KeylessError("%s says kind %r but its body is of kind %r" % (where, kind_version.get("kind"), body.get("kind")))
    pairs = _body_signatures(body, where)
    if not any(_names_signature(sig, signature) for sig, _key in pairs):
        raise KeylessError("%s body does not record this signature: the log entry is for another signature" % where)
    if not any(_names_signature(sig, signature) and _names_certificate(cert, leaf, leaf_der) for sig, cert in pairs):
        raise KeylessError("%s body records this signature with another certificate or key than the bundle's" % where)
    if body.get("kind") == "hashedrekord":
        _check_hashedrekord_digest(body, signed_bytes, where)


# ---------------------------------------------------------------- transparency log: proofs


def _canonical_set_payload(body_b64, integrated_time, log_id, log_index):
    # RFC 8785 canonical JSON; for these four keys (ASCII names, integers, a base64 string) sorted compact JSON is identical.
    payload = {"body": body_b64, "integratedTime": integrated_time, "logID": log_id.hex(), "logIndex": log_index}
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("ascii")


def _verify_set(entry, log, integrated_time, log_index, where):
    promise = entry.get("inclusionPromise")
    if not promise:
        return None
    signature = _b64decode(_mapping(promise, where + " inclusionPromise").get("signedEntryTimestamp"), where + " signedEntryTimestamp")
    payload = _canonical_set_payload(entry.get("canonicalizedBody"), integrated_time, log.key_id, log_index)
    if not _signature_verifies(log.public_key, signature, payload):
        raise KeylessError("%s signed entry timestamp (inclusion promise) does not verify with the key of log %s: "
                           "the entry or its promise was altered" % (where, log.base_url))
    return SET_PROOF, None


def _node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def merkle_root_from_path(index, tree_size, leaf_hash, path):
    """The RFC 6962 / RFC 9162 (2.1.3.2) root that an audit path leads to, or None if the path has the wrong shape."""
    if index < 0 or index >= tree_size:
        return None
    node, last, result = index, tree_size - 1, leaf_hash
    for sibling in path:
        if last == 0:
            return None
        if node & 1 or node == last:
            result = _node_hash(sibling, result)
            while not node & 1 and node != 0:
                node, last = node >> 1, last >> 1
        else:
            result = _node_hash(result, sibling)
        node, last = node >> 1, last >> 1
    return result if last == 0 else None


def _parse_note(text, where):
    """(signed text, body lines, [(name, signature bytes)]) of a signed note (checkpoint)."""
    split = text.find("\n\n")
    if split < 0:
        raise KeylessError("%s checkpoint is not a signed note (no blank line before its signatures)" % where)
    signed, lines = text[:split + 1], text[:split].split("\n")
    signatures = []
    for name, encoded in NOTE_SIGNATURE_LINE.findall(text[split + 2:]):
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) > 4:
            signatures.append((name, raw[4:]))
    if len(lines) < 3 or not signatures:
        raise KeylessError("%s checkpoint is not a signed note with origin, tree size, root hash and a signature" % where)
    return signed, lines, signatures


def _checkpoint_time(lines):
    """The signed 'Timestamp: <nanoseconds>' line Rekor v1 adds to its checkpoints, as a datetime, or None."""
    for line in lines[3:]:
        if line.startswith("Timestamp: ") and line[11:].isdigit():
            return EPOCH + datetime.timedelta(microseconds=int(line[11:]) // 1000)
    return None


def _verify_checkpoint(proof, log, tree_size, root_hash, where):
    """(True, signed checkpoint time or None), or (False, None) when the proof has no checkpoint."""
    envelope = (proof.get("checkpoint") or {}).get("envelope")
    if not isinstance(envelope, str) or not envelope:
        return False, None
    signed, lines, signatures = _parse_note(envelope, where)
    if not any(_signature_verifies(log.public_key, signature, signed.encode("utf-8")) for _name, signature in signatures):
        raise KeylessError("%s checkpoint signature does not verify with the key of log %s: the checkpoint was altered or is from another log"
                           % (where, log.base_url))
    if lines[1] != str(tree_size):
        raise KeylessError("%s checkpoint is for tree size %s but the inclusion proof is for %d" % (where, lines[1], tree_size))
    if lines[2] != base64.b64encode(root_hash).decode("ascii"):
        raise KeylessError("%s checkpoint root hash %s does not match the inclusion proof's rootHash %s"
                           % (where, lines[2], base64.b64encode(root_hash).decode("ascii")))
    return True, _checkpoint_time(lines)


def _verify_inclusion_proof(entry, body_bytes, log, where):
    proof = entry.get("inclusionProof")
    if not proof:
        return None
    proof = _mapping(proof, where + " inclusionProof")
    index = _integer(proof.get("logIndex"), where + " inclusionProof.logIndex")
    tree_size = _integer(proof.get("treeSize"), where + " inclusionProof.treeSize")
    root_hash = _b64decode(proof.get("rootHash"), where + " inclusionProof.rootHash")
    hashes = proof.get("hashes") or []
    if not isinstance(hashes, list):
        raise KeylessError("%s inclusionProof.hashes is not a list" % where)
    path = [_b64decode(item, where + " inclusionProof.hashes[]") for item in hashes]
    computed = merkle_root_from_path(index, tree_size, hashlib.sha256(b"\x00" + body_bytes).digest(), path)
    if computed != root_hash:
        raise KeylessError("%s inclusion proof does not lead from the entry to its rootHash: the entry body or the proof was altered" % where)
    signed, checkpoint_time = _verify_checkpoint(proof, log, tree_size, root_hash, where)
    return (INCLUSION_PROOF if signed else UNSIGNED_PROOF), checkpoint_time


def _logs_for(trust_root, key_id, where):
    logs = trust_root.tlogs.get(key_id)
    if not logs:
        known = ", ".join("%s (%s)" % (log.base_url, base64.b64encode(log.key_id).decode()) for items in trust_root.tlogs.values() for log in items)
        raise KeylessError("%s is from the log with ID %s, which the trust root does not list (it lists: %s): "
                           "add that log to the trust root" % (where, base64.b64encode(key_id).decode(), known or "no transparency log"))
    return logs


def _proofs(entry, body_bytes, log, integrated_time, log_index, where):
    """([names of the proofs that verify], signed checkpoint time or None)."""
    found = [proof for proof in (_verify_set(entry, log, integrated_time, log_index, where),
                                 _verify_inclusion_proof(entry, body_bytes, log, where)) if proof]
    verified = [name for name, _moment in found if name != UNSIGNED_PROOF]
    if not verified:
        detail = "its inclusion proof has no signed checkpoint" if found else "it has neither an inclusion promise nor an inclusion proof"
        raise KeylessError("%s is not proven to be in the log: %s" % (where, detail))
    return verified, ([moment for _name, moment in found if moment] or [None])[0]


def _check_signing_time(where, moment, validity, proofs, checkpoint_time):
    if not validity.contains(moment):
        raise KeylessError("%s was integrated at %s, outside the signing certificate's validity (%s): the certificate had expired or was not yet valid"
                           % (where, _iso(moment), validity.describe()))
    if SET_PROOF in proofs:
        return
    # Only the signed entry timestamp covers integratedTime; without it the checkpoint's signed time bounds when the entry was logged.
    if checkpoint_time is None:
        raise KeylessError("%s is proven only by an inclusion proof whose checkpoint has no signed timestamp, so its integratedTime is not "
                           "authenticated and the certificate's validity at signing cannot be checked: use a bundle with its inclusionPromise" % where)
    if checkpoint_time < moment or checkpoint_time > validity.end:
        raise KeylessError("%s is proven only by an inclusion proof whose checkpoint was signed at %s, not between its integratedTime %s and the "
                           "end of the signing certificate's validity %s" % (where, _iso(checkpoint_time), _iso(moment), _iso(validity.end)))


def _verify_tlog_entry(entry, number, trust_root, context):
    where = "transparency log entry %d" % number
    entry = _mapping(entry, where)
    key_id = _b64decode(_mapping(entry.get("logId"), where + " logId").get("keyId"), where + " logId.keyId")
    logs = _logs_for(trust_root, key_id, where)
    log_index = _integer(entry.get("logIndex"), where + " logIndex")
    integrated_time = _integer(entry.get("integratedTime", 0), where + " integratedTime")
    if integrated_time <= 0:
        raise KeylessError("%s has no integratedTime (a Rekor v2 entry needs a signed timestamp, which is not checked here)" % where)
    moment = _from_unix(integrated_time)
    body_bytes = _b64decode(entry.get("canonicalizedBody"), where + " canonicalizedBody")
    _check_body(entry, body_bytes, context["leaf"], context["leaf_der"], context["signature"], context["signed_bytes"], where)
    log = _log_valid_at(logs, moment, where)
    proofs, checkpoint_time = _proofs(entry, body_bytes, log, integrated_time, log_index, where)
    _check_signing_time(where, moment, _cert_validity(context["leaf"]), proofs, checkpoint_time)
    return {"integrated_time": integrated_time, "log_index": log_index, "log_id": key_id.hex(), "log_url": log.base_url,
            "log_proof": " and ".join(proofs), "moment": moment}


def _log_valid_at(logs, moment, where):
    for log in logs:
        if log.window.contains(moment):
            return log
    raise KeylessError("%s was integrated at %s, when the trust root's key for log %s was not valid (%s)"
                       % (where, _iso(moment), logs[0].base_url, logs[0].window.describe()))


def _verify_tlog(material, trust_root, context):
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list) or not entries:
        raise KeylessError("the bundle has no transparency log entry (verificationMaterial.tlogEntries): keyless verification needs one")
    if not trust_root.tlogs:
        raise KeylessError("the trust root lists no transparency log (tlogs is empty): add the Rekor log the bundle was recorded in")
    problems = []
    for number, entry in enumerate(entries):
        try:
            return _verify_tlog_entry(entry, number, trust_root, context)
        except KeylessError as exc:
            problems.append(str(exc))
    raise KeylessError(problems[0] if len(problems) == 1 else "no transparency log entry verifies: " + "; ".join(problems))


# ---------------------------------------------------------------- certificate transparency


def _sct_milliseconds(sct):
    stamp = sct.timestamp if sct.timestamp.tzinfo else sct.timestamp.replace(tzinfo=UTC)
    return (stamp - EPOCH) // datetime.timedelta(milliseconds=1)


def _sct_signed_data(leaf, issuer, sct):
    """The RFC 6962 section 3.2 structure a CT log signs for a precertificate entry."""
    tbs = leaf.tbs_precertificate_bytes
    extensions = getattr(sct, "extension_bytes", b"")
    issuer_key_hash = hashlib.sha256(_spki_der(issuer.public_key())).digest()
    head = struct.pack(">BBQH", 0, 0, _sct_milliseconds(sct), 1) + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
    return head + struct.pack(">H", len(extensions)) + extensions


def _sct_verifies(sct, leaf, issuer, trust_root):
    crypto = _Crypto.get()
    if sct.version != crypto.x509.certificate_transparency.Version.v1:
        return "an SCT of unknown version"
    logs = trust_root.ctlogs.get(sct.log_id)
    if not logs:
        return "an SCT from CT log %s, which the trust root does not list" % base64.b64encode(sct.log_id).decode()
    data = _sct_signed_data(leaf, issuer, sct)
    moment = EPOCH + datetime.timedelta(milliseconds=_sct_milliseconds(sct))
    for log in logs:
        if _signature_verifies(log.public_key, sct.signature, data, sct.signature_hash_algorithm):
            return None if log.window.contains(moment) else "an SCT of %s made when its key was not valid (%s)" % (log.base_url, log.window.describe())
    return "an SCT whose signature does not verify with the key of CT log %s" % logs[0].base_url


def _verify_sct(leaf, path, trust_root):
    if not trust_root.ctlogs:
        return SCT_NOT_CHECKED
    crypto = _Crypto.get()
    try:
        scts = leaf.extensions.get_extension_for_class(crypto.x509.PrecertificateSignedCertificateTimestamps).value
    except crypto.x509.ExtensionNotFound as exc:
        raise KeylessError("the signing certificate has no embedded SCT, but the trust root lists CT logs: "
                           "it was not logged in certificate transparency") from exc
    problems = [_sct_verifies(sct, leaf, path[1], trust_root) for sct in scts]
    if None in problems:
        return SCT_VERIFIED
    raise KeylessError("the signing certificate's certificate transparency proof (SCT) does not verify: it has %s" % "; ".join(problems or ["no SCT"]))


# ---------------------------------------------------------------- entry point


def _leaf_and_intermediates(bundle):
    material = _verification_material(bundle)
    certificates = _bundle_certificates_der(bundle)
    if not certificates:
        detail = "it is signed with a key (verificationMaterial.publicKey)" if material.get("publicKey") else "verificationMaterial has none"
        raise KeylessError("the bundle carries no certificate, so it is not keyless: %s; verify it with the signer's public key" % detail)
    parsed = [_parse_certificate(der, "bundle certificate %d" % number) for number, der in enumerate(certificates)]
    return material, certificates[0], parsed[0], parsed[1:]


def verify_keyless(bundle, signed_bytes, signature, trust_root, what="signature"):
    """Verify a keyless Sigstore bundle offline; return the identity, issuer and log facts, or raise KeylessError."""
    _Crypto.get()
    if not isinstance(trust_root, TrustRoot):
        raise KeylessError("%s: the trust root must come from load_trust_root()" % what)
    if not isinstance(signed_bytes, (bytes, bytearray, memoryview)) or not isinstance(signature, (bytes, bytearray, memoryview)):
        raise KeylessError("%s: the signed content and the signature must be bytes" % what)
    try:
        return _verify(bundle, bytes(signed_bytes), bytes(signature), trust_root)
    except KeylessError as exc:
        raise KeylessError("%s: %s" % (what, exc)) from None


def _verify(bundle, signed_bytes, signature, trust_root):
    material, leaf_der, leaf, intermediates = _leaf_and_intermediates(bundle)
    _check_bundle_media_type(bundle)
    authority, path = _chain_to_trust_root(leaf, intermediates, trust_root)
    _check_leaf_usage(leaf)
    if not _signature_verifies(leaf.public_key(), signature, signed_bytes):
        raise KeylessError("the signature does not verify with the signing certificate's key: the signed content or the signature differs")
    context = {"leaf": leaf, "leaf_der": leaf_der, "signature": signature, "signed_bytes": signed_bytes}
    logged = _verify_tlog(material, trust_root, context)
    _check_chain_at(path, authority, logged.pop("moment"))
    result = {"identity": certificate_identity(leaf), "issuer": certificate_issuer(leaf), "certificate_authority": authority.uri}
    result.update(logged)
    result["sct"] = _verify_sct(leaf, path, trust_root)
    return result
