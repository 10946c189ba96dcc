# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment:
    """Options of the modules that check cosign signatures before images go anywhere."""

    DOCUMENTATION = r"""
options:
  signed_by:
    description:
      - Public keys (paths of PEM files on the host that runs the module, or PEM text), ECDSA P-256/P-384, RSA or
        Ed25519, as C(cosign generate-key-pair) writes C(cosign.pub).
      - When set, an image passes only if at least one signature attached to its manifest or index digest verifies
        with one of these keys and its signed payload names that digest. cosign's simple-signing payloads (tag
        C(sha256-<hex>.sig)) and cosign 3's Sigstore bundles (OCI referrers) both count; attestations and SBOMs do not.
      - Every image is checked before anything is done; when one fails, the task fails naming each refused image and
        why (no signature, bad signature, unknown key, payload for another digest), and nothing is loaded or written.
        In check mode the task fails the same way, so it predicts the real run.
      - As cosign does, the repository a signature names (C(docker-reference)) is reported, not required to match
        the image's, because images are signed where they are built and verified where they were copied to.
      - Needs the Python library C(cryptography) on the host that runs the module (only when a check is asked for).
    type: list
    elements: str
  sigstore_trust_root:
    description:
      - A Sigstore trust root (C(trusted_root.json), with Fulcio certificate authorities, Rekor and CT log keys) on the
        host that runs the module, to verify keyless signatures offline. Without it, a keyless signature (a Fulcio
        certificate instead of a key) cannot be verified inside the air gap and does not count.
      - A keyless signature counts when its certificate chains to an authority of the trust root, its signature
        verifies with the certificate, the transparency log entry it carries is proven by a log of the trust root,
        and its identity is one of O(sigstore_identities).
    type: path
  sigstore_identities:
    description:
      - The signers a keyless signature may come from; required with O(sigstore_trust_root).
    type: list
    elements: dict
    suboptions:
      issuer:
        description: The OIDC issuer the certificate names (for example C(https://token.actions.githubusercontent.com)).
        type: str
        required: true
      subject:
        description: The certificate's identity (its e-mail or URI subject alternative name), exactly.
        type: str
        required: true
"""
