# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real container engines for the system tests, each private to one test session.

Every engine runs on sockets, ports and directories under one temporary
directory that :class:`Engines` owns, so a test session never touches the
machine's own engines (``/var/lib/docker``, ``/run/containerd``, ...) and
several sessions can run side by side.  :meth:`Engines.close` stops every
daemon it started, kills what is left of their process trees, unmounts what
they mounted and removes the directory; it also runs at interpreter exit.

The engines are Debian 12's packages: dockerd 20.10 (with its own managed
containerd), containerd 1.6, podman 4.3, skopeo 1.9 and docker-registry
(distribution 2.8).  The docker CLI used is Debian's ``/usr/bin/docker``:
``/usr/local/bin/docker`` on these machines is a newer client that shadows it.

Nothing here imports the collection: the engines are the reference the
collection's code is tested against.
"""

import atexit
import base64
import ctypes
import http.client
import json
import os
import random
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request

DOCKER_CLI = "/usr/bin/docker"  # Debian's client, matching dockerd 20.10; not /usr/local/bin/docker
DOCKERD = "/usr/sbin/dockerd"
CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
PODMAN = "/usr/bin/podman"
SKOPEO = "/usr/bin/skopeo"
REGISTRY = "/usr/bin/docker-registry"
OPENSSL = "/usr/bin/openssl"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CURRENT_DIR = os.environ.get("AIRGAP_CURRENT_DIR") or os.path.join(ROOT, ".build", "current")
CURRENT_BINS = os.path.join(CURRENT_DIR, "bins", "root")
CURRENT_CHROOT = os.path.join(CURRENT_DIR, "chroot")
CURRENT_SETUP = "tests/system/current_engines.sh (make current-engines)"

START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
COMMAND_TIMEOUT = 300.0

_PR_SET_PDEATHSIG = 1


class EngineError(Exception):
    """An engine did not start, or a command against it failed."""


class EngineCommandError(EngineError):
    """A command exited non-zero; carries the command, exit code and output."""

    def __init__(self, args, returncode, stdout, stderr):
        self.cmd = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        err = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else (stderr or "")
        super().__init__("command %r exited %d:\n%s" % (self.cmd, returncode, err[-4000:]))


def _die_with_parent():
    """preexec_fn: the daemon gets SIGTERM if the test process dies without cleaning up."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run_command(args, check=True, text=True, input=None, env=None, cwd=None, timeout=COMMAND_TIMEOUT):
    """Run ``args``; return the CompletedProcess, raising EngineCommandError when ``check`` and it failed."""
    if text and isinstance(input, bytes):
        text = False
    proc = subprocess.run(
        [str(a) for a in args],
        input=input,
        capture_output=True,
        text=text,
        env=env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise EngineCommandError(proc.args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def docker_cli(host, *args, **kwargs):
    """Run Debian's docker CLI with ``-H host`` (any Docker-API socket: a dockerd, podman's service).

    ``config_dir`` (required) is DOCKER_CONFIG; the legacy builder is used (DOCKER_BUILDKIT=0);
    other kwargs as :func:`run_command`.
    """
    config_dir = kwargs.pop("config_dir")
    program = kwargs.pop("program", DOCKER_CLI)
    if "env" not in kwargs:
        env = _client_env()
        env.update(DOCKER_CONFIG=config_dir, DOCKER_BUILDKIT="0")
        kwargs["env"] = env
    return run_command([program, "-H", host] + list(args), **kwargs)


# ---- engine generations ----------------------------------------------------------------------------------
# "system" is the machine's own Debian packages (Debian 12: Docker 20.10, containerd 1.6, podman 4.3, skopeo
# 1.9; Debian 13: Docker 26.1, containerd 1.7, podman 5.4); "current" is Debian unstable's, unpacked or in a
# chroot by tests/system/current_engines.sh.  A generation is named after its kind and version (docker20,
# docker28, docker28-containerd-store, containerd16, containerd21, podman43, podman58), and one that cannot
# run here says why.


class Generation:
    """One engine generation: ``kind`` (docker, containerd, podman), ``source`` (system or current), ``store``
    (for docker: classic or containerd); ``name`` like ``docker28-containerd-store``; ``version`` as the engine
    prints it; ``missing`` is None when it can run here, otherwise why not."""

    def __init__(self, kind, source, store=None):
        self.kind = kind
        self.source = source
        self.store = store
        self.version, self.missing = self._probe()
        parts = (self.version or "").split(".")
        digits = (parts[0] if kind == "docker" else "".join(parts[:2])) if self.version else source
        self.name = "%s%s%s" % (kind, digits, "-containerd-store" if store == "containerd" else "")

    def __repr__(self):
        return "Generation(%s %s)" % (self.name, self.version or self.missing)

    def binary(self, name):
        """Path of one of this generation's programs (outside a chroot)."""
        if self.source == "system":
            return {"docker": DOCKER_CLI, "dockerd": DOCKERD, "containerd": CONTAINERD, "ctr": CTR,
                    "podman": PODMAN, "skopeo": SKOPEO}[name]
        sub = "sbin" if name == "dockerd" else "bin"
        return os.path.join(CURRENT_BINS, "usr", sub, name)

    def path_env(self):
        """PATH for this generation's programs first (dockerd finds containerd's shims and docker-init there)."""
        extra = []
        if self.source == "current":
            extra = [os.path.join(CURRENT_BINS, "usr", "bin"), os.path.join(CURRENT_BINS, "usr", "sbin")]
        return ":".join(extra + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"])

    def _probe(self):
        program = {"docker": "dockerd", "containerd": "containerd", "podman": "podman"}[self.kind]
        if self.kind == "podman" and self.source == "current":
            if not os.path.exists(os.path.join(CURRENT_CHROOT, "usr", "bin", "podman")):
                return None, "podman from Debian unstable is not set up: run %s" % CURRENT_SETUP
            command = chroot_command(["podman", "--version"])
        else:
            path = self.binary(program)
            if not os.path.exists(path):
                hint = CURRENT_SETUP if self.source == "current" else "make deps"
                return None, "%s is not installed: run %s" % (path, hint)
            command = [path, "--version"]
        try:
            out = run_command(command, timeout=60).stdout
        except (EngineError, OSError, subprocess.TimeoutExpired) as exc:
            return None, "%s does not run here: %s" % (" ".join(command[:1]), str(exc)[:300])
        return _version_in(out), None


def _version_in(text):
    """The first dotted version number in ``text`` ("Docker version 28.5.2+dfsg4, build …" -> "28.5.2")."""
    import re  # pylint: disable=import-outside-toplevel

    found = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return found.group(1) if found else "unknown"


_GENERATIONS = None
_GENERATIONS_LOCK = threading.Lock()


def generations(kind=None):
    """Every engine generation of the matrix (probed once per process), or those of one ``kind``."""
    global _GENERATIONS  # pylint: disable=global-statement
    with _GENERATIONS_LOCK:
        if _GENERATIONS is None:
            _GENERATIONS = [
                Generation("docker", "system"), Generation("docker", "current"),
                Generation("docker", "current", store="containerd"),
                Generation("containerd", "system"), Generation("containerd", "current"),
                Generation("podman", "system"), Generation("podman", "current"),
            ]
    return [g for g in _GENERATIONS if kind is None or g.kind == kind]


def find_generation(name_or_kind, source="system"):
    """The generation named ``name_or_kind`` (``docker28``), or the ``source`` one of a kind (``docker``)."""
    for gen in generations():
        if gen.name == name_or_kind or (gen.kind == name_or_kind and gen.source == source and gen.store is None):
            return gen
    raise EngineError("no engine generation %r among %s" % (name_or_kind, [g.name for g in generations()]))


def chroot_command(args, binds=()):
    """``args`` run inside Debian unstable's chroot, in a private mount namespace (the mounts vanish with it).

    /proc, /dev, /sys and the host's /tmp are mounted in it, and each path in ``binds`` at the same path, so
    engine directories, sockets and archives under them are shared with the host."""
    script = (
        'set -e; r=$1; shift; n=$1; shift; '
        'mount -t proc proc "$r/proc"; mount --rbind /dev "$r/dev"; mount --rbind /sys "$r/sys"; '
        'mount --rbind /tmp "$r/tmp"; '
        'while [ "$n" -gt 0 ]; do mkdir -p "$r$1"; mount --bind "$1" "$r$1"; shift; n=$((n-1)); done; '
        'exec chroot "$r" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TMPDIR=/var/tmp LC_ALL=C.UTF-8 '
        'PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$@"')
    binds = [os.path.realpath(b) for b in binds]
    return (["unshare", "-m", "--propagation", "private", "/bin/sh", "-c", script, "chroot", CURRENT_CHROOT,
             str(len(binds))] + binds + [str(a) for a in args])


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path, lines=40):
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        return "(no log: %s)" % exc
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, socket_path, timeout=10.0):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = socket_path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def unix_http(socket_path, method, path, body=None, headers=None, timeout=10.0):
    """One HTTP request over a unix socket; returns (status, headers dict, body bytes)."""
    conn = _UnixHTTPConnection(socket_path, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _wait_until(probe, timeout, what, proc=None, log_path=None, interval=0.1):
    """Call ``probe`` until it returns true; raise EngineError with the log tail on timeout or early exit."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EngineError("%s exited with %s before it was ready; log %s:\n%s"
                              % (what, proc.returncode, log_path, tail(log_path) if log_path else ""))
        try:
            if probe():
                return
        except (OSError, http.client.HTTPException, urllib.error.URLError, ssl.SSLError) as exc:
            last_error = exc
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)
    raise EngineError("%s not ready after %.0f s (last error: %s); log %s:\n%s"
                      % (what, timeout, last_error, log_path, tail(log_path) if log_path else ""))


class Daemon:
    """A long-running process started by the tests, its log, and how to stop it."""

    name = "daemon"

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.log_path = os.path.join(self.dir, "%s.log" % self.name)
        self.proc = None
        self._log = None

    @property
    def pid(self):
        """The daemon's process id, or None when it is not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def _spawn(self, args, env=None):
        self._log = open(self.log_path, "ab")  # pylint: disable=consider-using-with
        self.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(a) for a in args],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.dir,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )

    def log_tail(self, lines=40):
        """The last lines of the daemon's log."""
        return tail(self.log_path, lines)

    def kill(self):
        """SIGKILL the daemon, as a crash or the OOM killer would: its files, sockets and data stay as they are."""
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT)

    def restart(self):
        """Start the daemon again on the same directory, data and sockets (after :meth:`kill`); returns it."""
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.start()

    def stop(self):
        """Stop the daemon: SIGTERM, then SIGKILL; then kill whatever is left that runs under its directory."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(STOP_TIMEOUT)
            self.proc = None
        kill_processes_under(self.dir)
        unmount_under(self.dir)
        if self._log is not None:
            self._log.close()
            self._log = None


def _processes_mentioning(path):
    """PIDs of processes whose command line or working directory is under ``path``."""
    path = os.path.realpath(path)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % entry, "rb") as handle:
                args = handle.read().decode("utf-8", "replace").split("\0")
            cwd = os.readlink("/proc/%s/cwd" % entry)
        except OSError:
            continue
        if cwd == path or cwd.startswith(path + "/") or any(path + "/" in arg or arg.endswith(path) for arg in args):
            found.append(int(entry))
    return found


def kill_processes_under(path, timeout=10.0):
    """SIGTERM, then SIGKILL, every process that runs from or names a path under ``path``."""
    pids = _processes_mentioning(path)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [pid for pid in pids if os.path.exists("/proc/%d" % pid) and not _is_zombie(pid)]
            time.sleep(0.1)
        if not pids:
            return


def _is_zombie(pid):
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True


def mounts_under(path):
    """Mount points at or below ``path``, deepest first."""
    path = os.path.realpath(path)
    points = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            point = line.split()[4].decode("utf-8", "replace")
            point = point.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
            if point == path or point.startswith(path + "/"):
                points.append(point)
    return sorted(set(points), key=len, reverse=True)


def unmount_under(path):
    """Lazily unmount everything mounted at or below ``path``."""
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


class Dockerd(Daemon):
    """Debian's dockerd 20.10 with vfs storage, no networking set-up, and its own managed containerd.

    ``socket`` is the API socket path, ``host`` the ``unix://`` URL for ``-H``/``DOCKER_HOST``.
    With ``tls`` (a CertificateAuthority) it also listens on ``tcp_host`` (``tcp://127.0.0.1:PORT``)
    with ``--tlsverify``; ``client_cert_path`` is then a ``DOCKER_CERT_PATH`` for a client.
    """

    name = "dockerd"

    def __init__(self, directory, tls=None, generation=None):
        super().__init__(directory)
        self.generation = generation or find_generation("docker")
        self.containerd = None  # the external containerd a current dockerd runs on
        self.tls = tls
        self.tcp_host = None
        self.client_cert_path = None
        self.socket = os.path.join(self.dir, "docker.sock")
        self.host = "unix://" + self.socket
        self.data_root = os.path.join(self.dir, "data")
        self.exec_root = os.path.join(self.dir, "exec")
        self.pidfile = os.path.join(self.dir, "docker.pid")
        self.config_dir = os.path.join(self.dir, "client")  # DOCKER_CONFIG for the CLI
        self.config_file = os.path.join(self.dir, "daemon.json")

    def start(self, timeout=START_TIMEOUT):
        """Start dockerd and wait until ``/_ping`` answers."""
        os.makedirs(self.config_dir, exist_ok=True)
        gen = self.generation
        if gen.missing:
            raise EngineError("%s cannot run here: %s" % (gen.name, gen.missing))
        # The file also keeps /etc/docker/daemon.json out.  Docker 29's default store is the containerd image store.
        settings = {"storage-driver": "vfs"}
        if gen.store == "containerd":
            settings = {"features": {"containerd-snapshotter": True}, "storage-driver": "native"}
        _write(self.config_file, json.dumps(settings) + "\n")
        args = [gen.binary("dockerd"), "--config-file", self.config_file,
                "--iptables=false", "--ip6tables=false", "--bridge=none",
                "--data-root", self.data_root, "--exec-root", self.exec_root, "--pidfile", self.pidfile, "-H", self.host]
        if gen.source == "current":  # dockerd 28 does not start a containerd of its own
            if self.containerd is None or self.containerd.pid is None:
                self.containerd = Containerd(os.path.join(self.dir, "c"), generation=find_generation("containerd", "current"))
                self.containerd.start()
            args += ["--containerd", self.containerd.address]
        env = _daemon_env()
        env["PATH"] = gen.path_env()
        self._spawn(args + self._tls_args(), env=env)
        _wait_until(self.ping, timeout, "%s in %s" % (gen.name, self.dir), self.proc, self.log_path)
        return self

    def stop(self):
        """Stop dockerd, then the external containerd it ran on (if any)."""
        Daemon.stop(self)
        if self.containerd is not None:
            self.containerd.stop()

    def _tls_args(self):
        if self.tls is None:
            return []
        cert, key = self.tls.server_cert(os.path.join(self.dir, "tls"))
        self.client_cert_path = self.tls.client_cert(os.path.join(self.dir, "client-certs"))
        self.tcp_host = "tcp://127.0.0.1:%d" % free_port()
        return ["-H", self.tcp_host, "--tlsverify", "--tlscacert", self.tls.ca_cert, "--tlscert", cert, "--tlskey", key]

    def restart(self):
        """Start dockerd again after :meth:`kill`. Its own containerd is stopped first and its pid file removed, as
        under systemd, which reaps it: here the orphan may stay a zombie that dockerd takes for a live containerd."""
        if self.containerd is not None and self.containerd.pid is None:
            self.containerd = None  # killed with the rest: start() makes a new one on the same directory
        elif self.containerd is None:
            kill_processes_under(self.dir)
        pidfile = os.path.join(self.exec_root, "containerd", "containerd.pid")
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        return Daemon.restart(self)

    def ping(self):
        """True when the daemon answers ``GET /_ping`` with OK."""
        if not os.path.exists(self.socket):
            return False
        status, dummy, body = unix_http(self.socket, "GET", "/_ping", timeout=5)
        return status == 200 and body.strip() == b"OK"

    def api(self, method, path, body=None, headers=None, timeout=60.0):
        """One raw Engine API request: (status, headers, body bytes)."""
        return unix_http(self.socket, method, path, body=body, headers=headers, timeout=timeout)

    def cli(self, *args, **kwargs):
        """Run Debian's docker CLI against this daemon: ``cli("images", "-q")``; kwargs as :func:`run_command`."""
        kwargs.setdefault("config_dir", self.config_dir)
        kwargs.setdefault("program", self.generation.binary("docker"))
        return docker_cli(self.host, *args, **kwargs)

    def inspect(self, *names):
        """``docker inspect`` of images or containers: one dict per name."""
        return json.loads(self.cli("inspect", "--type", "image", *names).stdout)

    def image_ids(self):
        """Set of full image IDs the daemon holds."""
        return set(self.cli("images", "-q", "--no-trunc").stdout.split())


class Containerd(Daemon):
    """A standalone containerd 1.6 with its own root, state and sockets; cri plugin disabled."""

    name = "containerd"

    def __init__(self, directory, namespace="k8s.io", generation=None):
        super().__init__(directory)
        self.generation = generation or find_generation("containerd")
        self.address = os.path.join(self.dir, "containerd.sock")
        self.root = os.path.join(self.dir, "root")
        self.state = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "config.toml")
        self.namespace = namespace

    def config(self):
        """The config file's text (version 2 for containerd 1.x, version 3 for 2.x)."""
        v2 = not self.generation.version.startswith("1.")
        disabled = ["io.containerd.grpc.v1.cri"]
        disabled += ["io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"] if v2 else []
        disabled += ["io.containerd.snapshotter.v1.%s" % name for name in ("aufs", "btrfs", "devmapper", "zfs")]
        return "\n".join([
            "version = %d" % (3 if v2 else 2),
            'root = "%s"' % self.root,
            'state = "%s"' % self.state,
            "oom_score = 0",
            "disabled_plugins = [%s]" % ", ".join('"%s"' % p for p in disabled),
            "[grpc]",
            '  address = "%s"' % self.address,
            "[ttrpc]",
            '  address = "%s.ttrpc"' % self.address,
            "[debug]",
            '  address = "%s"' % os.path.join(self.dir, "debug.sock"),
            "[metrics]",
            '  address = ""',
            '[plugins."io.containerd.internal.v1.opt"]',
            '  path = "%s"' % os.path.join(self.dir, "opt"),
            "",
        ])

    def start(self, timeout=START_TIMEOUT):
        """Start containerd and wait until ``ctr version`` reaches it."""
        with open(self.config_path, "w", encoding="utf-8") as handle:
            handle.write(self.config())
        if self.generation.missing:
            raise EngineError("%s cannot run here: %s" % (self.generation.name, self.generation.missing))
        env = _daemon_env()
        env["PATH"] = self.generation.path_env()
        self._spawn([self.generation.binary("containerd"), "--config", self.config_path, "--log-level", "warn"], env=env)
        _wait_until(self._ready, timeout, "%s in %s" % (self.generation.name, self.dir), self.proc, self.log_path)
        return self

    @property
    def ctr_path(self):
        """The ``ctr`` of this containerd's generation."""
        return self.generation.binary("ctr")

    def _ready(self):
        return os.path.exists(self.address) and run_command(
            [self.ctr_path, "--address", self.address, "--timeout", "5s", "version"], check=False, timeout=10).returncode == 0

    def ctr(self, *args, **kwargs):
        """Run ``ctr --address … -n <namespace> ARGS``; ``namespace=`` overrides the default ``k8s.io``."""
        namespace = kwargs.pop("namespace", self.namespace)
        kwargs.setdefault("env", _client_env())
        return run_command([self.ctr_path, "--address", self.address, "-n", namespace] + list(args), **kwargs)

    def export(self, path, names, options=()):
        """``ctr images export OPTIONS PATH NAMES``, checked whole. containerd 2.1's ctr (through its transfer service)
        once exited 0 leaving the file 741 bytes short of its last entry (CI of 2026-12-07; not seen again in four
        reruns): a short file is exported once more, and a second short one fails naming it."""
        for _attempt in range(2):
            self.ctr("images", "export", *(list(options) + [path] + list(names)))
            if tar_is_whole(path):
                return path
        raise AssertionError("ctr images export left %s shorter than its tar headers say, twice" % path)

    def image_refs(self, namespace=None):
        """Set of image names in ``namespace`` (default: the helper's)."""
        return set(self.ctr("images", "ls", "-q", namespace=namespace or self.namespace).stdout.split())


def tar_is_whole(path):
    """Whether every entry of the plain tar at ``path`` lies within the file, the two end blocks after the last."""
    size = os.path.getsize(path)
    end = 0
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            end = member.offset_data + member.size
            if end > size:
                return False
    return size >= end + 1024 if end else size >= 1024


class Podman:
    """podman 4.3 as root on vfs, with private storage, run root, tmp dir and config files.

    ``cli(*args)`` runs a podman command; ``service()`` starts ``podman system service``
    on a private unix socket (the Docker-compatible API) once, and returns the socket path.
    """

    def __init__(self, directory, generation=None):
        self.dir = directory
        self.generation = generation or find_generation("podman")
        if self.generation.missing:
            raise EngineError("%s cannot run here: %s" % (self.generation.name, self.generation.missing))
        self.root = os.path.join(self.dir, "root")
        self.runroot = os.path.join(self.dir, "runroot")
        self.tmpdir = os.path.join(self.dir, "tmp")
        self.storage_conf = os.path.join(self.dir, "storage.conf")
        self.containers_conf = os.path.join(self.dir, "containers.conf")
        self.registries_conf = os.path.join(self.dir, "registries.conf")
        self.policy = os.path.join(self.dir, "policy.json")
        self.auth_file = os.path.join(self.dir, "auth.json")
        self.socket = os.path.join(self.dir, "podman.sock")
        self._service = None
        self._lock = threading.Lock()
        for sub in (self.root, self.runroot, self.tmpdir, os.path.join(self.dir, "networks")):
            os.makedirs(sub, exist_ok=True)
        _write(self.storage_conf, "\n".join([
            "[storage]",
            'driver = "vfs"',
            'graphroot = "%s"' % self.root,
            'runroot = "%s"' % self.runroot,
            "",
        ]))
        _write(self.containers_conf, "\n".join([
            "[engine]",
            'cgroup_manager = "cgroupfs"',
            'events_logger = "file"',
            'tmp_dir = "%s"' % self.tmpdir,
            "[network]",
            'network_config_dir = "%s"' % os.path.join(self.dir, "networks"),
            "",
        ]))
        _write_private_containers_config(self.registries_conf, self.policy)
        _write(self.auth_file, "{}\n")

    def global_args(self):
        """The options every podman command here gets."""
        return [
            "podman" if self.in_chroot else PODMAN,
            "--storage-driver", "vfs",
            "--root", self.root,
            "--runroot", self.runroot,
            "--tmpdir", self.tmpdir,
            "--cgroup-manager", "cgroupfs",
            "--events-backend", "file",
            "--network-config-dir", os.path.join(self.dir, "networks"),
        ]

    def env(self):
        """Environment pointing podman at the private config files."""
        env = _client_env()
        env.update(
            CONTAINERS_STORAGE_CONF=self.storage_conf,
            CONTAINERS_CONF=self.containers_conf,
            CONTAINERS_REGISTRIES_CONF=self.registries_conf,
            REGISTRY_AUTH_FILE=self.auth_file,
        )
        return env

    @property
    def in_chroot(self):
        """Whether this podman runs in Debian unstable's chroot (podman 5 needs a newer glibc than Debian 12's)."""
        return self.generation.source == "current"

    def command(self, args):
        """The command line that runs podman ``args`` with this podman's settings (through the chroot if need be)."""
        full = self.global_args() + list(args)
        if not self.in_chroot:
            return full
        settings = ["%s=%s" % item for item in sorted(self.env().items()) if item[0].startswith(("CONTAINERS_", "REGISTRY_"))]
        return chroot_command(["/usr/bin/env"] + settings + full)

    def cli(self, *args, **kwargs):
        """Run ``podman <private options> ARGS``; kwargs as :func:`run_command`."""
        kwargs.setdefault("env", self.env())
        return run_command(self.command(args), **kwargs)

    def docker_cli(self, *args, **kwargs):
        """Run Debian's docker CLI against this podman's API service (started if needed)."""
        kwargs.setdefault("config_dir", os.path.join(self.dir, "docker-client"))
        return docker_cli("unix://" + self.service(), *args, **kwargs)

    def image_ids(self):
        """Set of full image IDs podman holds."""
        return set(self.cli("images", "-q", "--no-trunc").stdout.split())

    def service(self, timeout=START_TIMEOUT):
        """Start (once) the Docker-compatible API on ``self.socket``; return the socket path."""
        with self._lock:
            if self._service is None:
                daemon = _PodmanService(os.path.join(self.dir, "service"))
                daemon.start(self.command(["system", "service", "--time", "0", "unix://" + self.socket]),
                             self.env(), self.socket, timeout)
                self._service = daemon
        return self.socket

    def stop(self):
        """Stop the API service, if started, and anything left running from this podman's directory."""
        if self._service is not None:
            self._service.stop()
            self._service = None
        kill_processes_under(self.dir)
        unmount_under(self.dir)


class _PodmanService(Daemon):
    name = "podman-service"

    def start(self, args, env, sock, timeout):
        self._spawn(args, env=env)

        def ready():
            return os.path.exists(sock) and unix_http(sock, "GET", "/_ping", timeout=5)[0] == 200

        _wait_until(ready, timeout, "podman system service", self.proc, self.log_path)


class Registry(Daemon):
    """``docker-registry serve`` (distribution 2.8) on 127.0.0.1, optionally with basic auth and/or TLS.

    ``host`` is ``127.0.0.1:PORT`` (the name to put in image references), ``url`` the base URL,
    ``auth`` a ``(user, password)`` tuple or None, ``ca_path``/``cert_dir`` the CA when TLS is on.
    """

    name = "registry"

    def __init__(self, directory, auth=None, tls=None, token=False):
        super().__init__(directory)
        self.token_server = TokenServer(os.path.join(self.dir, "token"), auth) if token else None
        self.storage = os.path.join(self.dir, "storage")
        self.config_path = os.path.join(self.dir, "config.yml")
        self.auth = auth
        self.tls = tls  # a CertificateAuthority, or None for plain HTTP
        self.port = None
        self.host = None
        self.url = None
        self.ca_path = None
        self.cert_dir = None
        self._docker_certs_dir = None

    def _config(self):
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            "    rootdirectory: %s" % self.storage,
            "  delete:",
            "    enabled: true",
            "http:",
            "  addr: 127.0.0.1:%d" % self.port,
            "  secret: airgap-test-%d" % self.port,
        ]
        if self.tls is not None:
            cert, key = self.tls.server_cert(os.path.join(self.dir, "tls"))
            lines += ["  tls:", "    certificate: %s" % cert, "    key: %s" % key]
        if self.token_server is not None:
            lines += ["auth:", "  token:", "    realm: %s" % self.token_server.realm, "    service: %s" % TokenServer.SERVICE,
                      "    issuer: %s" % TokenServer.ISSUER, "    rootcertbundle: %s" % self.token_server.cert_path]
        elif self.auth is not None:
            htpasswd = os.path.join(self.dir, "htpasswd")
            _write(htpasswd, htpasswd_line(*self.auth))
            lines += ["auth:", "  htpasswd:", "    realm: airgap-test", "    path: %s" % htpasswd]
        lines += ["health:", "  storagedriver:", "    enabled: false", ""]
        return "\n".join(lines)

    def start(self, timeout=START_TIMEOUT):
        """Start on a free loopback port (retrying if another process takes it first)."""
        if self.tls is not None:
            self.ca_path = self.tls.ca_cert
            self.cert_dir = self.tls.cert_dir
        for attempt in range(5):
            self.port = free_port()
            self.host = "127.0.0.1:%d" % self.port
            self.url = "%s://%s" % ("https" if self.tls is not None else "http", self.host)
            _write(self.config_path, self._config())
            self._spawn([REGISTRY, "serve", self.config_path], env=_daemon_env())
            try:
                _wait_until(self._ready, timeout, "docker-registry on %s" % self.host, self.proc, self.log_path)
                return self
            except EngineError:
                if attempt < 4 and "address already in use" in self.log_tail(5):
                    self.stop()
                    continue
                raise
        raise EngineError("docker-registry found no free port")

    def _ready(self):
        return self.get("/v2/", auth=False)[0] in (200, 401)

    def ssl_context(self):
        """An SSL context that trusts this registry's CA (None for plain HTTP)."""
        if self.tls is None:
            return None
        return ssl.create_default_context(cafile=self.ca_path)

    def get(self, path, auth=True, headers=None, timeout=10.0):
        """GET ``path`` (e.g. ``/v2/_catalog``); returns (status, headers dict, body bytes).

        With ``auth`` (default) and a password-protected registry, sends basic auth.
        """
        request = urllib.request.Request(self.url + path, headers=headers or {})
        if auth and self.auth is not None:
            token = base64.b64encode(("%s:%s" % self.auth).encode()).decode()
            request.add_header("Authorization", "Basic " + token)
        handlers = [urllib.request.ProxyHandler({})]  # never via a proxy: the registry is on loopback
        if self.tls is not None:
            handlers.append(urllib.request.HTTPSHandler(context=self.ssl_context()))
        try:
            with urllib.request.build_opener(*handlers).open(request, timeout=timeout) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def catalog(self):
        """Repository names the registry holds."""
        status, dummy, body = self.get("/v2/_catalog")
        if status != 200:
            raise EngineError("GET /v2/_catalog on %s: HTTP %d %r" % (self.host, status, body[:200]))
        return json.loads(body)["repositories"]

    def trust_in_docker(self):
        """Make every dockerd on this machine trust this TLS registry (``/etc/docker/certs.d/<host>/ca.crt``).

        Removed again when the registry stops.
        """
        if self.tls is None:
            return
        target = os.path.join("/etc/docker/certs.d", self.host)
        os.makedirs(target, exist_ok=True)
        shutil.copyfile(self.ca_path, os.path.join(target, "ca.crt"))
        self._docker_certs_dir = target

    def stop(self):
        super().stop()
        if self.token_server is not None:
            self.token_server.stop()
        if self._docker_certs_dir is not None:
            shutil.rmtree(self._docker_certs_dir, ignore_errors=True)
            self._docker_certs_dir = None


class TokenServer:
    """A Bearer token service for distribution's ``auth: token`` (the flow Docker Hub, Harbor and GitLab use).

    Checks HTTP Basic credentials (when ``auth`` is given) and answers ``{"token": JWT}``: RS256-signed, the
    signing certificate in the ``x5c`` header and in the registry's ``rootcertbundle``, granting the scopes asked.
    ``requests`` counts the token requests served.
    """

    SERVICE = "airgap-test-registry"
    ISSUER = "airgap-test-token-issuer"

    def __init__(self, directory, auth):
        # pylint: disable=import-outside-toplevel
        import datetime
        import http.server
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        os.makedirs(directory, exist_ok=True)
        self.auth = auth
        self.requests = 0
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "airgap test token signer")])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self._key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(self._key, hashes.SHA256()))
        self.cert_path = os.path.join(directory, "token-signer.pem")
        _write(self.cert_path, cert.public_bytes(serialization.Encoding.PEM))
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # pylint: disable=invalid-name
                server.requests += 1
                status, body = server.answer(self.path, self.headers.get("Authorization", ""))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args):  # pylint: disable=arguments-differ
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.realm = "http://127.0.0.1:%d/token" % self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def answer(self, path, authorization):
        """(HTTP status, JSON body) for one token request."""
        import urllib.parse  # pylint: disable=import-outside-toplevel
        if self.auth is not None:
            expected = "Basic " + base64.b64encode(("%s:%s" % self.auth).encode()).decode()
            if authorization != expected:
                return 401, {"details": "invalid credentials"}
        query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
        access = []
        for scope in query.get("scope", []):
            kind, repo, actions = scope.split(":")
            access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        return 200, {"token": self._jwt(access)}

    def _jwt(self, access):
        # pylint: disable=import-outside-toplevel
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def encode(value):
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=")

        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        claims = {"iss": self.ISSUER, "sub": self.auth[0] if self.auth else "", "aud": self.SERVICE, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": "%d-%d" % (now, random.getrandbits(32)), "access": access}
        signing_input = encode(header) + b"." + encode(claims)
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()


class CertificateAuthority:
    """A self-signed CA made with the openssl CLI, issuing server certificates for 127.0.0.1/localhost."""

    def __init__(self, directory):
        self.dir = directory
        self.cert_dir = os.path.join(self.dir, "trust")  # holds only ca.crt: for --cert-dir style options
        os.makedirs(self.cert_dir, exist_ok=True)
        self.ca_key = os.path.join(self.dir, "ca.key")
        self.ca_cert = os.path.join(self.cert_dir, "ca.crt")
        self._serial = 0
        self._lock = threading.Lock()
        run_command([OPENSSL, "req", "-x509", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-keyout", self.ca_key, "-out", self.ca_cert, "-days", "3", "-subj", "/CN=airgap.images test CA",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    def server_cert(self, directory):
        """Write a key and a certificate for 127.0.0.1 and localhost into ``directory``; return (cert, key)."""
        return self._issue(directory, "server", "/CN=127.0.0.1", ["subjectAltName=IP:127.0.0.1,DNS:localhost"], "serverAuth")

    def client_cert(self, directory):
        """Write ``cert.pem``, ``key.pem`` and ``ca.pem`` (a docker ``DOCKER_CERT_PATH``) into ``directory``; return it."""
        cert, key = self._issue(directory, "client", "/CN=airgap-test-client", [], "clientAuth")
        os.replace(cert, os.path.join(directory, "cert.pem"))
        os.replace(key, os.path.join(directory, "key.pem"))
        shutil.copyfile(self.ca_cert, os.path.join(directory, "ca.pem"))
        return directory

    def _issue(self, directory, name, subject, extra, usage):
        os.makedirs(directory, exist_ok=True)
        key = os.path.join(directory, name + ".key")
        csr = os.path.join(directory, name + ".csr")
        cert = os.path.join(directory, name + ".crt")
        ext = os.path.join(directory, name + ".ext")
        _write(ext, "\n".join(extra + [
            "basicConstraints=CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=" + usage,
            "",
        ]))
        with self._lock:
            self._serial += 1
            serial = self._serial
        run_command([OPENSSL, "req", "-new", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                     "-keyout", key, "-out", csr, "-subj", subject])
        run_command([OPENSSL, "x509", "-req", "-in", csr, "-CA", self.ca_cert, "-CAkey", self.ca_key,
                     "-set_serial", str(serial), "-days", "3", "-out", cert, "-extfile", ext])
        return cert, key


def htpasswd_line(user, password):
    """One htpasswd line with a bcrypt hash (the only scheme distribution accepts)."""
    import bcrypt  # pylint: disable=import-outside-toplevel

    return "%s:%s\n" % (user, bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode())


class Skopeo:
    """skopeo 1.9 with ``--insecure-policy`` and private registries/policy/auth files.

    Short names never resolve to a remote registry (no search registries, short names
    disabled), so only references that name 127.0.0.1 or a local transport work.
    """

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(self.dir, exist_ok=True)
        self.registries_conf = os.path.join(self.dir, "registries.conf")
        self.policy = os.path.join(self.dir, "policy.json")
        self.auth_file = os.path.join(self.dir, "auth.json")
        self.registries_d = os.path.join(self.dir, "registries.d")
        self.tmpdir = os.path.join(self.dir, "tmp")
        os.makedirs(self.tmpdir, exist_ok=True)
        os.makedirs(self.registries_d, exist_ok=True)
        _write_private_containers_config(self.registries_conf, self.policy)
        _write(self.auth_file, "{}\n")

    def env(self):
        """Environment pointing skopeo at the private files."""
        env = _client_env()
        env.update(
            CONTAINERS_REGISTRIES_CONF=self.registries_conf,
            REGISTRY_AUTH_FILE=self.auth_file,
            TMPDIR=self.tmpdir,
        )
        return env

    def run(self, *args, **kwargs):
        """Run ``skopeo --insecure-policy --registries.d … --tmpdir … ARGS``; kwargs as :func:`run_command`."""
        kwargs.setdefault("env", self.env())
        return run_command([SKOPEO, "--insecure-policy", "--registries.d", self.registries_d,
                            "--tmpdir", self.tmpdir] + list(args), **kwargs)

    __call__ = run

    def inspect(self, ref, *args):
        """``skopeo inspect ARGS REF`` parsed from JSON (``ref`` like ``docker-archive:/x.tar``)."""
        return json.loads(self.run("inspect", *(list(args) + [ref])).stdout)


class BuiltImage:
    """An image built by the ``docker_images`` fixture, as ``docker inspect`` reports it."""

    def __init__(self, name, image_id, diff_ids, files, inspect):
        self.name = name  # "airgap-test/base:1"
        self.id = image_id  # "sha256:…", the config digest
        self.diff_ids = diff_ids  # ["sha256:…", …], RootFS.Layers, bottom first
        self.files = files  # {path in image: sha256 hex} for the files this image's own layer adds
        self.inspect = inspect  # the full docker inspect dict

    def __repr__(self):
        return "BuiltImage(%r, %s, %d layers)" % (self.name, self.id[:19], len(self.diff_ids))


# The test images: name -> (parent or None, {path: (size, seed)}, extra Dockerfile lines).
TEST_IMAGES = {
    "airgap-test/base:1": (None, {"etc/os-release": (64, 1), "base/blob.bin": (1536 * 1024, 2)}, []),
    "airgap-test/lib:1": ("airgap-test/base:1", {"lib/libtest.so": (1200 * 1024, 3)}, ["ENV LIB_VERSION=1"]),
    "airgap-test/app-a:1": ("airgap-test/lib:1", {"app/a.bin": (1100 * 1024, 4), "app/a.txt": (300, 5)},
                            ['LABEL org.airgap.test="app-a"', 'CMD ["/app/a.bin"]']),
    "airgap-test/app-b:1": ("airgap-test/lib:1", {"app/b.bin": (1300 * 1024, 6)},
                            ['LABEL org.airgap.test="app-b"', 'CMD ["/app/b.bin"]']),
}


def seeded_bytes(size, seed):
    """``size`` random-looking bytes that are the same on every run for the same seed."""
    return random.Random(seed).randbytes(size)


def build_test_images(daemon, directory, images=None):
    """Build ``images`` (default :data:`TEST_IMAGES`) in ``daemon`` with the legacy builder.

    Each is ``FROM scratch`` or its parent plus one ``COPY`` layer of seeded content
    (file mtimes fixed, so the same DiffIDs come out on every run).
    Returns {name: BuiltImage}, in build order.
    """
    import hashlib  # pylint: disable=import-outside-toplevel

    images = TEST_IMAGES if images is None else images
    built = {}
    for index, (name, (parent, files, extra)) in enumerate(images.items()):
        context = os.path.join(directory, "context-%d" % index)
        root = os.path.join(context, "root")
        digests = {}
        for path, (size, seed) in files.items():
            data = seeded_bytes(size, seed)
            target = os.path.join(root, path)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            _write(target, data)
            digests["/" + path] = hashlib.sha256(data).hexdigest()
        for dirpath, dirnames, filenames in os.walk(root):
            for entry in dirnames + filenames:
                os.utime(os.path.join(dirpath, entry), (1700000000, 1700000000))
        _write(os.path.join(context, "Dockerfile"), "\n".join(
            ["FROM %s" % (parent or "scratch"), "COPY root/ /"] + list(extra) + [""]))
        daemon.cli("build", "--quiet", "--network", "none", "-t", name, context, timeout=COMMAND_TIMEOUT)
        info = daemon.inspect(name)[0]
        built[name] = BuiltImage(name, info["Id"], list(info["RootFS"]["Layers"]), digests, info)
    return built


class Engines:
    """Owner of one temporary directory and every engine started in it; ``close()`` stops them all."""

    def __init__(self, base=None, keep=False):
        # Short paths: unix socket paths must stay under 108 bytes, and dockerd nests them deeply.
        self.dir = tempfile.mkdtemp(prefix=ENGINES_PREFIX, dir=base or "/tmp")
        self.keep = keep
        self._started = []
        self._counter = 0
        self._ca = None
        self._lock = threading.Lock()
        self._closed = False
        _write(os.path.join(self.dir, OWNER_FILE), _process_identity(os.getpid()))
        atexit.register(self.close)
        sweep_abandoned(os.path.dirname(self.dir))

    def _subdir(self, kind):
        with self._lock:
            self._counter += 1
            path = os.path.join(self.dir, "%s%d" % (kind, self._counter))
        os.makedirs(path)
        return path

    def _track(self, engine):
        with self._lock:
            self._started.append(engine)
        return engine

    def dockerd(self, tls=False, generation=None):
        """Start and return a new, empty :class:`Dockerd` (also on TCP with mutual TLS when ``tls``) of
        ``generation`` (a :class:`Generation` or its name; default: the system's)."""
        gen = _as_generation(generation, "docker")
        daemon = self._track(Dockerd(self._subdir("d"), self.ca() if tls else None, generation=gen))
        return daemon.start()

    def containerd(self, namespace="k8s.io", generation=None):
        """Start and return a new, empty :class:`Containerd` of ``generation``."""
        gen = _as_generation(generation, "containerd")
        daemon = self._track(Containerd(self._subdir("c"), namespace=namespace, generation=gen))
        return daemon.start()

    def podman(self, generation=None):
        """A new :class:`Podman` with empty storage, of ``generation``."""
        return self._track(Podman(self._subdir("p"), generation=_as_generation(generation, "podman")))

    def engine(self, generation):
        """A new, empty engine of ``generation``, whatever its kind."""
        gen = _as_generation(generation, None)
        return {"docker": self.dockerd, "containerd": self.containerd, "podman": self.podman}[gen.kind](generation=gen)

    def skopeo(self):
        """A new :class:`Skopeo` helper."""
        return Skopeo(self._subdir("s"))

    def ca(self):
        """The session's :class:`CertificateAuthority`, made on first use."""
        with self._lock:
            if self._ca is None:
                self._ca = CertificateAuthority(os.path.join(self.dir, "ca"))
            return self._ca

    def registry(self, auth=None, tls=False, token=False):
        """Start and return a :class:`Registry`; ``auth=(user, password)`` adds htpasswd auth (or, with ``token=True``,
        Bearer tokens from a token server that checks those credentials); ``tls=True`` HTTPS."""
        daemon = self._track(Registry(self._subdir("r"), auth=auth, tls=self.ca() if tls else None, token=token))
        return daemon.start()

    def stop(self, engine):
        """Stop one engine now (it is also forgotten by ``close``)."""
        with self._lock:
            if engine in self._started:
                self._started.remove(engine)
        engine.stop()

    def close(self):
        """Stop every engine (newest first), kill leftovers, unmount, and remove the directory."""
        if self._closed:
            return
        self._closed = True
        errors = []
        for engine in reversed(self._started):
            try:
                engine.stop()
            except Exception as exc:  # pylint: disable=broad-exception-caught
                errors.append("%r: %s" % (engine, exc))
        self._started = []
        kill_processes_under(self.dir)
        unmount_under(self.dir)
        if not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        if errors:
            raise EngineError("stopping engines: " + "; ".join(errors))


def _as_generation(value, kind):
    if isinstance(value, Generation):
        return value
    return find_generation(value or kind)


OWNER_FILE = "owner"
ENGINES_PREFIX = "airgap-eng-"


def _process_identity(pid):
    """Return "PID START-TIME" of a live process (the start time guards against PID reuse), or "" if it is gone."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as handle:
            start = handle.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return ""
    return "%d %s" % (pid, start)


def sweep_abandoned(base):
    """Remove engine directories under ``base`` whose owning test process died without cleaning up
    (SIGKILL): kill what still runs from them, unmount, delete.  Directories of live sessions stay."""
    for entry in os.listdir(base):
        path = os.path.join(base, entry)
        if not entry.startswith(ENGINES_PREFIX):
            continue
        try:
            with open(os.path.join(path, OWNER_FILE), encoding="utf-8") as handle:
                owner = handle.read().strip()
            pid = int(owner.split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if _process_identity(pid) == owner:
            continue
        kill_processes_under(path)
        unmount_under(path)
        shutil.rmtree(path, ignore_errors=True)


def _write(path, data):
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as handle:  # pylint: disable=unspecified-encoding
        handle.write(data)


def _write_private_containers_config(registries_conf, policy):
    """registries.conf with no search registries and short names disabled; an accept-anything policy."""
    _write(registries_conf, 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n')
    _write(policy, '{"default": [{"type": "insecureAcceptAnything"}]}\n')


def _client_env():
    """A clean environment for engine clients: no DOCKER_*/CONTAINER_* settings leak in from the caller."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("DOCKER_", "CONTAINER_", "CONTAINERS_", "CONTAINERD_", "REGISTRY_AUTH_FILE"))}
    env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin:" + env["PATH"]  # Debian's binaries before /usr/local/bin
    env["LC_ALL"] = "C"
    return env


def _daemon_env():
    return _client_env()
