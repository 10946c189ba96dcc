# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Each engine's registry mirror configuration: the site registry as the mirror of upstream registries.

Pure rendering and planning (no Ansible): :func:`plan_mirrors` reads the files as they are and says what each
should hold; :func:`apply_plan` writes the ones that differ, each atomically (a temp file beside it, renamed).

* containerd reads ``<config_path>/<upstream>/hosts.toml`` (containerd's docs/hosts.md): the CRI plugin when its
  registry ``config_path`` names the directory, ``ctr`` with ``--hosts-dir``. Read on every pull: no restart.
* podman, skopeo, buildah and CRI-O read ``[[registry]]`` / ``[[registry.mirror]]`` tables from a drop-in of
  ``/etc/containers/registries.conf.d`` (containers-registries.conf(5)); a CA goes to
  ``/etc/containers/certs.d/<site>/ca.crt``.
* Docker's daemon.json ``registry-mirrors`` is used for Docker Hub only: other upstreams cannot be mirrored there,
  and are reported as such. dockerd reloads the key on SIGHUP (``systemctl reload docker``).
"""

import json
import os
import re

from .atomic import atomic_file
from .errors import ImageError

ENGINES = ("containerd", "podman", "cri-o", "docker")
DEFAULT_CONFIG_PATHS = {
    "containerd": "/etc/containerd/certs.d",
    "podman": "/etc/containers/registries.conf.d/50-airgap-images-mirrors.conf",
    "cri-o": "/etc/containers/registries.conf.d/50-airgap-images-mirrors.conf",
    "docker": "/etc/docker/daemon.json",
}
DEFAULT_CERTS_DIRS = {"podman": "/etc/containers/certs.d", "cri-o": "/etc/containers/certs.d", "docker": "/etc/docker/certs.d"}
DEFAULT_CONTAINERD_CONFIG = "/etc/containerd/config.toml"
# The names Docker Hub goes by; daemon.json's registry-mirrors serve these and nothing else.
DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
# Where containerd sends docker.io itself (its default when a hosts.toml names no server).
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
HEADER = "# Written by airgap.images.registry_mirror: pulls from these registries go to the site registry %s first.\n"
FILE_MODE = 0o644
DIR_MODE = 0o755

_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
                   r"|\[[0-9A-Fa-f:]+\])(?::[0-9]{1,5})?$")


class MirrorError(ImageError):
    """The options or an existing file do not allow writing the mirror configuration."""


def registry_host(value, what):
    """``value`` as a registry ``host[:port]``; a scheme, a path or anything else is refused, naming ``what``."""
    host = (value or "").strip()
    if "://" in host:
        raise MirrorError("%s %r: give host[:port] without a scheme (https is the default; plain HTTP is the insecure "
                          "option)" % (what, value))
    if not _HOST.match(host):
        raise MirrorError("%s %r is not a registry host[:port]" % (what, value))
    return host.lower()


class Site:
    """The site registry as the mirror: ``host`` (host[:port]), ``scheme`` (https or http), ``skip_verify``, ``ca_path``."""

    def __init__(self, host, insecure=False, skip_verify=False, ca_path=None):
        self.host = registry_host(host, "registry")
        if insecure and ca_path:
            raise MirrorError("ca_path is for a registry on HTTPS; insecure=true means plain HTTP")
        self.scheme = "http" if insecure else "https"
        self.skip_verify = bool(skip_verify) and not insecure
        self.ca_path = ca_path or None

    @property
    def url(self):
        return "%s://%s" % (self.scheme, self.host)

    @property
    def unverified(self):
        """Whether the engine must be told to take the site registry without a verified certificate (or TLS)."""
        return self.scheme == "http" or self.skip_verify


def upstream_hosts(values):
    """The upstream registries, validated, lower-cased, in order, each once."""
    hosts = []
    for value in values or []:
        host = registry_host(value, "upstream registry")
        if host not in hosts:
            hosts.append(host)
    if not hosts:
        raise MirrorError("upstreams is empty: name the registries to mirror (docker.io, registry.k8s.io, ...)")
    return hosts


def _toml(value):
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value)


def hosts_toml(upstream, site):
    """containerd's ``hosts.toml`` for ``upstream``: the site registry first, trusted to pull and resolve; the
    upstream itself (``server``) only as the fallback, which inside the air gap does not answer."""
    server = DOCKER_HUB_SERVER if upstream in DOCKER_HUB else "https://" + upstream
    lines = [HEADER % site.host, "server = %s\n" % _toml(server), "\n", "[host.%s]\n" % _toml(site.url),
             '  capabilities = ["pull", "resolve"]\n']
    if site.ca_path:
        lines.append("  ca = %s\n" % _toml(site.ca_path))
    if site.skip_verify:
        lines.append("  skip_verify = true\n")
    return "".join(lines)


def registries_conf(upstreams, site):
    """A containers-registries.conf(5) drop-in: one ``[[registry]]`` per upstream, the site registry its mirror."""
    lines = [HEADER % site.host]
    for upstream in upstreams:
        lines += ["\n", "[[registry]]\n", "prefix = %s\n" % _toml(upstream), "location = %s\n" % _toml(upstream),
                  "\n", "[[registry.mirror]]\n", "location = %s\n" % _toml(site.host)]
        if site.unverified:
            lines.append("insecure = true\n")
    return "".join(lines)


def docker_daemon_settings(existing, upstreams, site):
    """daemon.json's settings with the site registry as Docker Hub's mirror (first of ``registry-mirrors``; mirrors
    already there are kept after it) and, when it is unverified, in ``insecure-registries``; every other key kept.
    Returns (settings, mirrored upstreams, upstreams Docker cannot mirror)."""
    settings = dict(existing)
    mirrored = [upstream for upstream in upstreams if upstream in DOCKER_HUB]
    unmirrored = [upstream for upstream in upstreams if upstream not in DOCKER_HUB]
    if mirrored:
        others = [url for url in _string_list(settings, "registry-mirrors") if url.rstrip("/") != site.url]
        settings["registry-mirrors"] = [site.url] + others
        if site.unverified:
            insecure = _string_list(settings, "insecure-registries")
            settings["insecure-registries"] = insecure + ([site.host] if site.host not in insecure else [])
    return settings, mirrored, unmirrored


def _string_list(settings, key):
    value = settings.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MirrorError("daemon.json: %s is not a list of strings; fix the file first" % key)
    return list(value)


def docker_json(settings):
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"


class FileChange:
    """One file: what it holds (``before``, None when absent) and should hold (``after``), and its modes."""

    def __init__(self, path, before, after, mode, mode_before):
        self.path = path
        self.before = before
        self.after = after
        self.mode = mode
        self.mode_before = mode_before

    @property
    def changed(self):
        return self.before != self.after or self.mode_before != self.mode

    def describe(self):
        return {"path": self.path, "changed": self.changed}

    def diff(self):
        return {"before_header": self.path, "after_header": self.path,
                "before": _text(self.before) if self.before is not None else "", "after": _text(self.after)}


def _text(data):
    return data.decode("utf-8", "replace")


def _read(path):
    """(bytes, permission bits) of the file at ``path``, (None, None) when there is none."""
    try:
        with open(path, "rb") as handle:
            return handle.read(), os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None, None
    except IsADirectoryError:
        raise MirrorError("%s is a directory, not a file" % path) from None
    except OSError as err:
        raise MirrorError("cannot read %s: %s" % (path, err.strerror)) from None


def _file(path, content, mode=FILE_MODE):
    before, mode_before = _read(path)
    return FileChange(path, before, content if isinstance(content, bytes) else content.encode("utf-8"), mode, mode_before)


class MirrorPlan:
    """What :func:`plan_mirrors` found: the files, which upstreams are mirrored and which cannot be, whether the
    engine must be restarted (or reloaded) to read a change, and notes for the user."""

    def __init__(self, engine, site, files, mirrored, unmirrored, reload_needed, notes):
        self.engine = engine
        self.site = site
        self.files = files
        self.mirrored = mirrored
        self.unmirrored = unmirrored
        self.reload_needed = reload_needed
        self.notes = notes

    @property
    def changed(self):
        return any(change.changed for change in self.files)

    @property
    def restart_needed(self):
        return self.reload_needed and self.changed

    def diff(self):
        return [change.diff() for change in self.files if change.changed]


def plan_mirrors(engine, site, upstreams, config_path=None, certs_dir=None, containerd_config=DEFAULT_CONTAINERD_CONFIG):
    """The :class:`MirrorPlan` for ``engine`` (one of :data:`ENGINES`)."""
    if engine not in ENGINES:
        raise MirrorError("engine %r has no mirror configuration here; one of %s" % (engine, ", ".join(ENGINES)))
    upstreams = upstream_hosts(upstreams)
    config_path = config_path or DEFAULT_CONFIG_PATHS[engine]
    if site.ca_path and not os.path.isfile(site.ca_path):
        raise MirrorError("ca_path %s: no such file on this host" % site.ca_path)
    if engine == "containerd":
        files = [_file(os.path.join(config_path, upstream, "hosts.toml"), hosts_toml(upstream, site)) for upstream in upstreams]
        return MirrorPlan(engine, site, files, upstreams, [], False, containerd_notes(config_path, containerd_config))
    files = _ca_files(site, certs_dir or DEFAULT_CERTS_DIRS[engine])
    if engine == "docker":
        before, mode_before = _read(config_path)
        existing = _docker_settings(config_path, before)
        settings, mirrored, unmirrored = docker_daemon_settings(existing, upstreams, site)
        notes = []
        if unmirrored:
            notes.append("Docker mirrors Docker Hub only (daemon.json registry-mirrors): pulls of %s still go to those "
                         "registries; pull from the site registry by name (image_pull) or run containerd or podman"
                         % ", ".join(unmirrored))
        if settings != existing:
            files.insert(0, FileChange(config_path, before, docker_json(settings).encode("utf-8"),
                                       mode_before if mode_before is not None else FILE_MODE, mode_before))
        return MirrorPlan(engine, site, files, mirrored, unmirrored, True, notes)
    files.insert(0, _file(config_path, registries_conf(upstreams, site)))
    return MirrorPlan(engine, site, files, upstreams, [], engine == "cri-o", [])


def _ca_files(site, certs_dir):
    """Docker and containers/image trust ``<certs_dir>/<host:port>/ca.crt`` for a registry: the CA is copied there."""
    if not site.ca_path:
        return []
    with open(site.ca_path, "rb") as handle:
        return [_file(os.path.join(certs_dir, site.host, "ca.crt"), handle.read())]


def _docker_settings(path, data):
    if data is None or not data.strip():
        return {}
    try:
        settings = json.loads(data.decode("utf-8"))
    except ValueError as err:
        raise MirrorError("%s is not valid JSON (%s); fix it first, it is left as it is" % (path, err)) from None
    if not isinstance(settings, dict):
        raise MirrorError("%s does not hold a JSON object; fix it first, it is left as it is" % path)
    return settings


def containerd_notes(hosts_dir, config_file):
    """A note when containerd's config file does not point the CRI plugin's registry ``config_path`` at ``hosts_dir``
    (containerd 1.6 to 2.x leave it empty by default, and then the kubelet's pulls ignore hosts.toml)."""
    data, _mode = _read(config_file) if config_file else (None, None)
    if data is None:
        return ["%s not found: the kubelet's pulls use %s only once containerd's CRI registry config_path names it"
                % (config_file, hosts_dir)] if config_file else []
    quoted = "[\"']%s/?[\"']" % re.escape(hosts_dir.rstrip("/"))
    listed = r"[\"'](?:[^\"']*:)?%s/?(?::[^\"']*)?[\"']" % re.escape(hosts_dir.rstrip("/"))
    if re.search(r"(?m)^\s*config_path\s*=\s*(?:%s|%s)" % (quoted, listed), _text(data)):
        return []
    return ["%s does not set the CRI registry config_path to %s: the kubelet's pulls ignore these mirrors until it "
            "does (containerd 2.x: [plugins.'io.containerd.cri.v1.images'.registry]; 1.x: "
            "[plugins.\"io.containerd.grpc.v1.cri\".registry]), then restart containerd" % (config_file, hosts_dir)]


def apply_plan(plan, check_mode=False):
    """Write every file of ``plan`` that differs (directories made 0755 as needed); nothing in check mode."""
    if check_mode:
        return
    for change in plan.files:
        if not change.changed:
            continue
        folder = os.path.dirname(change.path)
        try:
            os.makedirs(folder, mode=DIR_MODE, exist_ok=True)
        except OSError as err:
            raise MirrorError("cannot make %s: %s" % (folder, err.strerror)) from None
        if change.before == change.after:
            os.chmod(change.path, change.mode)
            continue
        with atomic_file(change.path, mode=change.mode) as out:
            out.write(change.after)
