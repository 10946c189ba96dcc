# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A registry (distribution API v2) as a store: pull images as the model, push the model.

TLS is verified unless told otherwise; plain HTTP only when asked. Auth
follows the ``WWW-Authenticate`` challenge (Basic, or Bearer tokens from the
realm), with credentials given or taken from ``~/.docker/config.json``. Every
blob pulled is verified against its digest; interrupted blob downloads
resume with ``Range``. A push sends an image as it came (blobs, manifest and
index unchanged), so the site registry serves upstream's digests.
"""

import base64
import io
import json
import os
import re
import time
from urllib.parse import urlencode, urljoin

from ..attachments import TAG_SUFFIXES, attachment_tag, referrer_entry
from ..digest import CHUNK_SIZE, sha256_digest
from ..errors import ArchiveError, ImageNotFoundError, StoreError
from .http_unix import requests
from ..model import INDEX_TYPES, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, RawDocument
from ..formats.oci_layout import (IndexWalker, WritePlan, artifact_from_manifest, artifact_key, build_index, image_from_found,
                                  manifest_artifact_type, parse_manifest)
from ..reference import parse_reference

ACCEPT = ", ".join((MEDIA_OCI_INDEX, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST))
RETRIES = 4
RETRY_STATUSES = (429, 500, 502, 503, 504)
UPLOAD_CHUNK = 64 * 1024 * 1024
_CHALLENGE_RE = re.compile(r'(\w+)="([^"]*)"')


class TransientError(StoreError):
    """A failure that may pass: HTTP 429 or 5xx, a broken connection. ``retried`` when the request was already retried."""

    def __init__(self, message, retried=False):
        StoreError.__init__(self, message)
        self.retried = retried


class RegistryStore:
    kind = "registry"

    def __init__(self, host, username=None, password=None, validate_certs=True, ca_path=None, insecure_http=False,
                 timeout=60, platform=None, docker_config=None):
        scheme = "http" if insecure_http or host.startswith("http://") else "https"
        self.host = host.split("://", 1)[-1].rstrip("/")
        self.base_url = "%s://%s" % (scheme, self.host)
        self.timeout = timeout
        self.platform = platform
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.verify = (ca_path or True) if validate_certs else False
        self._credentials = (username, password) if username else _docker_config_credentials(self.host, docker_config)
        self._tokens = {}
        self._blob_homes = {}
        self.mounted = []
        self.chunk_size = UPLOAD_CHUNK
        self.backoff = 0.5
        self.fetch_attachments = False  # images_of also reads each image's signatures, attestations and SBOMs
        self._unlisted_referrers = {}

    def __str__(self):
        return "registry %s" % self.base_url

    def close(self):
        self.session.close()

    # HTTP with auth --------------------------------------------------------------------------------------

    def _request(self, method, url, scope, expect=(200,), stream=False, **kwargs):
        """One request with auth; one without a stream body (replayable) is retried on 429, 5xx and broken connections."""
        url = urljoin(self.base_url, url)
        headers = dict(kwargs.pop("headers", {}))
        replayable = _replayable(kwargs)
        challenged = False
        attempt = 1
        while True:
            if scope in self._tokens:
                headers["Authorization"] = self._tokens[scope]
            response = self._attempt(method, url, headers, stream, attempt, replayable, **kwargs)
            if response is None:
                attempt += 1
            elif response.status_code == 401 and not challenged and replayable:
                challenged = True  # first contact, or an expired token: answer the challenge once
                self._authenticate(response, scope)
            elif response.status_code in RETRY_STATUSES and replayable and attempt < RETRIES:
                response.close()
                time.sleep(self._delay(attempt, response))
                attempt += 1
            else:
                break
        if response.status_code not in expect:
            self._fail(response, method, url, attempt)
        return response

    def _attempt(self, method, url, headers, stream, attempt, replayable, **kwargs):
        """The response; None after a broken connection that may be retried (having waited); TransientError when not."""
        try:
            return self._send(method, url, headers, stream, **kwargs)
        except TransientError as err:
            if not replayable:
                raise
            if attempt >= RETRIES:
                raise TransientError("%s (%d attempts)" % (err, attempt), retried=True) from None
        time.sleep(self._delay(attempt))
        return None

    def _delay(self, attempt, response=None):
        """Exponential backoff, or the registry's Retry-After when it gives one in seconds (at most a minute)."""
        retry_after = response.headers.get("Retry-After", "") if response is not None else ""
        if retry_after.isdigit():
            return min(int(retry_after), 60)
        return self.backoff * 2 ** (attempt - 1)

    def _send(self, method, url, headers, stream, **kwargs):
        timeout = (self.timeout, None) if stream else (self.timeout, self.timeout)
        try:
            return self.session.request(method, url, headers=headers, stream=stream, timeout=timeout, allow_redirects=True, **kwargs)
        except requests.exceptions.SSLError as err:
            if "WRONG_VERSION_NUMBER" in str(err):
                raise StoreError("%s: the registry does not speak TLS; if it serves plain HTTP on a trusted network, "
                                 "ask for insecure HTTP" % self) from None
            raise StoreError("%s: TLS verification failed (%s); pass ca_path with the registry's CA, or "
                             "validate_certs: false on a trusted network" % (self, _short(err))) from None
        except requests.exceptions.ConnectionError as err:
            raise TransientError("cannot reach %s: %s" % (self, _short(err))) from None
        except requests.exceptions.Timeout:
            raise TransientError("%s did not answer within %s s" % (self, self.timeout)) from None

    def _authenticate(self, response, scope):
        challenge = response.headers.get("WWW-Authenticate", "")
        kind = challenge.split(" ", 1)[0].lower()
        if kind == "basic":
            if not self._credentials:
                raise StoreError("%s requires a username and password" % self)
            self._tokens[scope] = "Basic " + _basic(*self._credentials)
        elif kind == "bearer":
            self._tokens[scope] = "Bearer " + self._fetch_token(dict(_CHALLENGE_RE.findall(challenge)), scope)
        else:
            raise StoreError("%s: unsupported authentication challenge %r" % (self, challenge.split(" ", 1)[0]))

    def _fetch_token(self, params, scope):
        realm = params.pop("realm", None)
        if not realm:
            raise StoreError("%s: Bearer challenge without a realm" % self)
        query = [("service", params.get("service", ""))] + [("scope", part) for part in scope.split()]
        headers = {"Authorization": "Basic " + _basic(*self._credentials)} if self._credentials else {}
        try:
            answer = self.session.get(realm + "?" + urlencode(query), headers=headers, timeout=self.timeout)
        except requests.exceptions.RequestException as err:
            raise StoreError("%s: cannot get a token from %s: %s" % (self, realm, _short(err))) from None
        if answer.status_code in (401, 403):
            raise StoreError("authentication failed for %s (token service %s): check username and password" % (self, realm))
        if answer.status_code != 200:
            raise StoreError("%s: token service %s answered HTTP %d" % (self, realm, answer.status_code))
        body = answer.json()
        return body.get("token") or body.get("access_token") or ""

    def _fail(self, response, method, url, attempts=1):
        path = url[len(self.base_url):] if url.startswith(self.base_url) else url
        detail = _registry_error(response)
        if response.status_code == 401:
            raise StoreError("authentication failed for %s (%s %s: %s): check username and password" % (self, method, path, detail))
        if response.status_code == 404:
            raise ImageNotFoundError("%s: %s not found: %s" % (self, path, detail))
        tries = " after %d attempts" % attempts if attempts > 1 else ""
        message = ("%s: %s %s failed (HTTP %d)%s: %s; check the registry (its log, its storage) or try again later"
                   % (self, method, path, response.status_code, tries, detail))
        if response.status_code in RETRY_STATUSES:
            raise TransientError(message, retried=attempts > 1)
        raise StoreError(message)

    # Pull -------------------------------------------------------------------------------------------------

    @staticmethod
    def _repository(reference):
        """Images keep their path in any registry: docker.io/library/busybox goes to <host>/library/busybox."""
        return reference.path

    def get_manifest(self, reference):
        """(bytes, media type, digest) of the manifest a reference names; None when absent."""
        return self.get_manifest_in(self._repository(reference), reference.digest or reference.tag or "latest")

    def get_manifest_in(self, repo, target):
        try:
            response = self._request("GET", "/v2/%s/manifests/%s" % (repo, target), "repository:%s:pull" % repo,
                                     headers={"Accept": ACCEPT})
        except ImageNotFoundError:
            return None
        data = response.content
        digest = sha256_digest(data)
        if target.startswith("sha256:") and digest != target:
            raise ArchiveError("%s: manifest %s has digest %s (corrupt or tampered)" % (self, target, digest))
        media_type = response.headers.get("Content-Type", "").split(";")[0] or json.loads(data).get("mediaType")
        return data, media_type, digest

    def image(self, name):
        """The image ``name`` points at (platform chosen from an index), layers streamed on demand; None when absent."""
        images = self.images_of(name)
        return images[0] if images else None

    def images_of(self, name):
        """The images ``name`` points at: one, or of an index each selected platform's; [] when absent."""
        reference = parse_reference(name) if isinstance(name, str) else name
        found = self.get_manifest(reference)
        if found is None:
            return []
        source = _RegistrySource(self, self._repository(reference), found)
        top = {"mediaType": found[1], "digest": found[2], "size": len(found[0])}
        images = [image_from_found(source, chosen, [reference] if reference.tag else [], [found[2]])
                  for chosen in IndexWalker(source, self.platform).choose_images(top, str(reference))]
        if self.fetch_attachments:
            images = [image.with_referrers(image.referrers + self._attached(source, image)) for image in images]
        return images

    def _attached(self, source, image):
        """What is attached to the image's manifest and index digests: referrers and cosign's tag-scheme objects."""
        found = {}
        for digest in (image.manifest_digest, image.index_digest):
            if digest is not None:
                found.update((artifact_key(artifact), artifact) for artifact in self.attachments(source, digest))
        return list(found.values())

    def attachments(self, source, digest):
        """The artifacts attached to ``digest`` in ``source``'s repository, each with its blobs (fetched when copied)."""
        artifacts = [self._artifact(source, descriptor["digest"]) for descriptor in self.referrers(source.repo, digest)]
        for suffix in TAG_SUFFIXES:
            tag = attachment_tag(digest, suffix)
            found = self.get_manifest_in(source.repo, tag)
            if found is not None:
                reference = parse_reference("%s/%s:%s" % (self.host, source.repo, tag))
                artifacts.append(self._artifact(source, found[2], found, [reference], tag))
        return artifacts

    def referrers(self, repo, digest):
        """The descriptors of the manifests whose subject is ``digest``: the referrers API's answer, or (a registry
        without it) the index under the fallback tag ``sha256-<hex>``."""
        response = self._request("GET", "/v2/%s/referrers/%s" % (repo, digest), "repository:%s:pull" % repo,
                                 expect=(200, 404), headers={"Accept": MEDIA_OCI_INDEX})
        if response.status_code == 200 and response.headers.get("Content-Type", "").startswith(MEDIA_OCI_INDEX):
            listing = response.json()
        else:
            found = self.get_manifest_in(repo, attachment_tag(digest))
            listing = json.loads(found[0]) if found is not None and found[1] in INDEX_TYPES else {}
        manifests = listing.get("manifests") if isinstance(listing, dict) else None
        return [d for d in manifests or [] if _is_manifest_descriptor(d)]

    def _artifact(self, source, digest, found=None, references=(), tag=None):
        found = found or self.get_manifest_in(source.repo, digest)
        if found is None:
            raise ArchiveError("%s: %s lists %s, which it does not hold" % (self, source.repo, digest))
        data, media_type, digest = found
        label = "%s/%s" % (self, source.repo)
        manifest = parse_manifest(data, label, "attached manifest %s" % digest[:19])
        artifact_type = manifest_artifact_type(manifest) or manifest.get("artifactType") or manifest["config"].get("mediaType")
        descriptor = {"mediaType": media_type, "digest": digest, "size": len(data)}
        return artifact_from_manifest(descriptor, manifest, RawDocument(data, media_type), artifact_type, source,
                                      references, (), [tag] if tag else [], tag=tag)

    def open_blob(self, repo, digest, size=None):
        return _BlobReader(self, repo, digest, size)

    # Push -------------------------------------------------------------------------------------------------

    def has_blob(self, repo, digest):
        response = self._request("HEAD", "/v2/%s/blobs/%s" % (repo, digest), "repository:%s:pull,push" % repo,
                                 expect=(200, 404))
        return response.status_code == 200

    def push(self, images):
        """Push each image under each of its tags, as it came: its layer blobs, config, manifest and index unchanged
        (an image without a manifest gets the one our writers make). Blobs the repository has are skipped, blobs
        pushed to another repository mounted. Returns bytes uploaded."""
        plan = WritePlan(images)
        uploaded = 0
        tops = {}
        for image, manifest, stored in zip(plan.images, plan.manifests, plan.stored):
            tags = [ref for ref in image.references if ref.tag]
            if not tags:
                raise StoreError("%s: cannot push %s: it has no tag" % (self, image.id))
            for repo in sorted({self._repository(ref) for ref in tags}):
                uploaded += self._push_image(repo, image, manifest, stored)
                top = tops.setdefault((repo, (image.index or manifest).digest), (image.index or manifest, set()))
                top[1].update(ref.tag for ref in tags if self._repository(ref) == repo)
        for (repo, _digest), (top, tags) in tops.items():
            for tag in sorted(tags):
                self._put_manifest(repo, tag, top)
        self._list_referrers()
        return uploaded

    def _push_image(self, repo, image, manifest, stored):
        uploaded = 0
        for layer in stored:
            if not self.has_blob(repo, layer.digest) and not self._mount(repo, layer.digest):
                self._restartable_upload(repo, layer.digest, layer.open, layer.size)
                uploaded += layer.size
            self._blob_homes[layer.digest] = repo
        if not self.has_blob(repo, image.id):
            self._restartable_upload(repo, image.id, lambda: io.BytesIO(image.config_bytes), len(image.config_bytes))
            uploaded += len(image.config_bytes)
        if image.index is not None:
            self._put_manifest(repo, manifest.digest, manifest)
        for artifact in image.referrers:
            uploaded += self._push_artifact(repo, artifact)
        return uploaded

    def _push_artifact(self, repo, artifact):
        """An artifact that travels with an image (an attestation its index lists, a referrer): blobs, then the
        manifest by digest, before the index that may name it."""
        uploaded = 0
        for blob in artifact.blobs:
            if not self.has_blob(repo, blob.digest):
                self._restartable_upload(repo, blob.digest, blob.open, blob.size)
                uploaded += blob.size
        response = self._put_manifest(repo, artifact.tag or artifact.manifest.digest, artifact.manifest)
        if artifact.tag is None and artifact.subject and "OCI-Subject" not in response.headers:
            self._unlisted_referrers.setdefault((repo, artifact.subject), {})[artifact.id] = artifact
        return uploaded

    def _list_referrers(self):
        """A registry without the referrers API lists a subject's referrers in the index under its fallback tag:
        add the ones pushed to what it lists already (others' referrers stay)."""
        for (repo, subject), artifacts in sorted(self._unlisted_referrers.items()):
            tag = attachment_tag(subject)
            found = self.get_manifest_in(repo, tag)
            listed = json.loads(found[0]).get("manifests", []) if found is not None and found[1] in INDEX_TYPES else []
            known = {entry.get("digest") for entry in listed}
            added = [referrer_entry(artifact) for digest, artifact in sorted(artifacts.items()) if digest not in known]
            if added:
                self._put_manifest(repo, tag, RawDocument(build_index(listed + added), MEDIA_OCI_INDEX))
        self._unlisted_referrers = {}

    def _put_manifest(self, repo, target, document):
        try:
            return self._request("PUT", "/v2/%s/manifests/%s" % (repo, target), "repository:%s:pull,push" % repo,
                                 expect=(201,), data=document.data, headers={"Content-Type": document.media_type})
        except StoreError as err:
            if document.media_type in INDEX_TYPES:
                raise StoreError("%s: the registry refused index %s as %s:%s (%s); a registry needs every platform an "
                                 "index lists: save the image with platforms: all" % (self, document.digest, repo, target, err)) from None
            raise

    def _mount(self, repo, digest):
        """Link a blob this store put in another repository (cross-repository mount); False when not possible."""
        home = self._blob_homes.get(digest)
        if home is None or home == repo:
            return False
        scope = "repository:%s:pull,push repository:%s:pull" % (repo, home)
        response = self._request("POST", "/v2/%s/blobs/uploads/?%s" % (repo, urlencode({"mount": digest, "from": home})),
                                 scope, expect=(201, 202))
        if response.status_code == 202:  # the registry declined and opened an upload instead: cancel it
            self._request("DELETE", urljoin(self.base_url, response.headers["Location"]), scope, expect=(204, 404, 405))
            return False
        self.mounted.append(digest)
        return True

    def _restartable_upload(self, repo, digest, open_stream, size):
        """Upload a blob; when a request carrying its bytes fails in a way that may pass, start over from a new stream."""
        for attempt in range(1, RETRIES + 1):
            try:
                with open_stream() as stream:
                    return self._upload(repo, digest, stream, size)
            except TransientError as err:
                if err.retried or attempt == RETRIES:
                    raise
                time.sleep(self._delay(attempt))
        return None

    def _upload(self, repo, digest, stream, size):
        """Upload in one PUT, or in PATCH chunks of ``chunk_size`` when the blob is larger than that."""
        scope = "repository:%s:pull,push" % repo
        location = self._request("POST", "/v2/%s/blobs/uploads/" % repo, scope, expect=(202,)).headers["Location"]
        if size > self.chunk_size:
            offset = 0
            while offset < size:
                length = min(self.chunk_size, size - offset)
                response = self._request("PATCH", location, scope, expect=(202,), data=_SizedStream(stream, length), headers={
                    "Content-Type": "application/octet-stream", "Content-Length": str(length),
                    "Content-Range": "%d-%d" % (offset, offset + length - 1)})
                location = response.headers["Location"]
                offset += length
            stream, size = io.BytesIO(b""), 0
        separator = "&" if "?" in location else "?"
        self._request("PUT", location + separator + urlencode({"digest": digest}), scope, expect=(201,),
                      data=_SizedStream(stream, size), headers={"Content-Type": "application/octet-stream",
                                                                "Content-Length": str(size)})


class _SizedStream:
    """The next ``size`` bytes of ``stream`` as a request body of known length (Content-Length, not chunked)."""

    def __init__(self, stream, size):
        self._stream = stream
        self._left = size
        self.len = size

    def __len__(self):
        return self.len

    def read(self, size=-1):
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._stream.read(min(want, CHUNK_SIZE)) if want > 0 else b""
        self._left -= len(data)
        return data


def _replayable(kwargs):
    data = kwargs.get("data")
    return data is None or isinstance(data, bytes)


class _RegistrySource:
    """One repository of a registry seen as an OCI layout, for the oci_layout readers."""

    def __init__(self, store, repo, first):
        self.store = store
        self.repo = repo
        self.label = "%s/%s" % (store, repo)
        self.compression = "none"
        self._known = {first[2]: first[0]}

    @staticmethod
    def _digest(name):
        parts = name.split("/")
        return "%s:%s" % (parts[1], parts[2])

    @staticmethod
    def region(name):  # pylint: disable=unused-argument
        """No blob here lies in a plain file of this host (the readers then stream it)."""
        return None

    def exists(self, name):
        digest = self._digest(name)
        return digest in self._known or self.store.has_blob(self.repo, digest) or self._manifest(digest) is not None

    def _manifest(self, digest):
        found = self.store.get_manifest_in(self.repo, digest)
        if found is not None:
            self._known[digest] = found[0]
        return found

    def read_bytes(self, name, limit=16 * 1024 * 1024):
        digest = self._digest(name)
        if digest in self._known:
            return self._known[digest]
        if not self.store.has_blob(self.repo, digest):
            if self._manifest(digest) is None:
                raise ArchiveError("%s: no blob or manifest %s" % (self.label, digest))
            return self._known[digest]
        with self.store.open_blob(self.repo, digest) as stream:
            data = stream.read(limit + 1)
        if len(data) > limit:
            raise ArchiveError("%s: blob %s is too large for metadata" % (self.label, digest))
        self._known[digest] = data
        return data

    def open(self, name):
        return self.store.open_blob(self.repo, self._digest(name))


class _BlobReader:
    """A blob download that resumes with Range after a broken connection."""

    def __init__(self, store, repo, digest, size):
        self._store = store
        self._repo = repo
        self._digest = digest
        self._size = size
        self._offset = 0
        self._attempts = 0
        self._response = None
        self._iter = None
        self._buffer = b""
        self._open()

    def _open(self):
        headers = {"Range": "bytes=%d-" % self._offset} if self._offset else {}
        self._response = self._store._request("GET", "/v2/%s/blobs/%s" % (self._repo, self._digest),  # pylint: disable=protected-access
                                              "repository:%s:pull" % self._repo, expect=(200, 206), stream=True, headers=headers)
        if self._offset and self._response.status_code != 206:
            self._response.close()
            raise StoreError("%s: blob %s download broke and the registry cannot resume it" % (self._store, self._digest))
        self._iter = self._response.iter_content(CHUNK_SIZE)

    def read(self, size=-1):
        while size is None or size < 0 or len(self._buffer) < size:
            chunk = self._next_chunk()
            if not chunk:
                break
            self._buffer += chunk
        if size is None or size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _next_chunk(self):
        while True:
            try:
                chunk = next(self._iter, b"")
                self._offset += len(chunk)
                return chunk
            except (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError):
                self._attempts += 1
                if self._attempts >= RETRIES:
                    raise StoreError("%s: the download of blob %s of %s broke %d times (each resumed where it stopped); "
                                     "check the network path to the registry and re-run the task"
                                     % (self._store, self._digest, self._repo, RETRIES)) from None
                self._response.close()
                time.sleep(self._store._delay(self._attempts))  # pylint: disable=protected-access
                self._open()

    def close(self):
        self._response.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_manifest_descriptor(descriptor):
    return isinstance(descriptor, dict) and descriptor.get("mediaType") == MEDIA_OCI_MANIFEST and isinstance(descriptor.get("digest"), str)


def _docker_config_credentials(host, config_path):
    path = config_path or os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(path) as handle:
            auths = json.load(handle).get("auths") or {}
    except (OSError, ValueError):
        return None
    for key in (host, "https://" + host, "http://" + host):
        entry = auths.get(key) or {}
        if entry.get("auth"):
            user, _sep, password = base64.b64decode(entry["auth"]).decode("utf-8").partition(":")
            return user, password
    return None


def _basic(user, password):
    return base64.b64encode(("%s:%s" % (user, password)).encode("utf-8")).decode("ascii")


def _registry_error(response):
    try:
        errors = response.json().get("errors") or []
        return "; ".join("%s: %s" % (e.get("code"), e.get("message")) for e in errors) or response.reason
    except ValueError:
        return response.reason or "HTTP %d" % response.status_code


def _short(err):
    text = str(err)
    return text if len(text) < 300 else text[:300] + "..."
