# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The ansible-core versions users run, as runtimes the playbook tests take (fixture ``ansible_runtime``).

* ``2.16``: the oldest that meta/runtime.yml admits (``requires_ansible: >=2.16.0``), newest patch, on this
  machine's Python 3.11: the venv ``.build/ansible-2.16`` from tests/ansible/requirements-2.16.txt
  (``make ansible-versions``).
* ``2.19``: ``.venv`` (requirements.txt), what every other test runs: the default of :class:`Playbook`.
* ``2.21``: the newest, which needs Python >= 3.12: ``/opt/ansible`` (Python 3.14) inside Debian unstable's
  chroot under .build/current/chroot (``make current-engines``), run through :func:`engines.chroot_command`.
  The host's /tmp is the chroot's /tmp, so engine sockets, archives, playbooks, results and the installed
  collection (all under /tmp) have the same paths on both sides; the repository root is bound in at its own
  path for ``ansible-galaxy collection build``.  The modules run with ``/opt/ansible/bin/python3`` there
  (it has ``requests``); engines that need a client binary (containerd's ``ctr``) are not for this runtime.

Each runtime builds and installs the collection with its own ``ansible-galaxy`` (:meth:`AnsibleRuntime.install`).
One that cannot run here says why (``missing``), and the fixture skips with that reason and the make target.
"""

import os
import subprocess
import sys

from ansible_collections.airgap.images.tests.system import engines

ROOT = engines.ROOT
VENV_BIN = os.path.dirname(sys.executable)
ANSIBLE_216 = os.path.join(ROOT, ".build", "ansible-2.16")
CHROOT_ANSIBLE = "/opt/ansible"


def clean_env(**extra):
    """The environment without this checkout on PYTHONPATH, so Ansible sees only the installed collection."""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="0", **extra)
    return env


class AnsibleRuntime:
    """One ansible-core installation: ``name`` ("2.19"), ``id`` ("ansible219"), ``python`` (the module-side
    interpreter, as ansible sees it), ``version`` (ansible-core's, probed), ``missing`` (None, or why it cannot
    run here) and, after :meth:`install`, ``collections`` (an ANSIBLE_COLLECTIONS_PATH holding airgap.images)."""

    setup = None
    files_under_tmp = False  # True: sees only this machine's /tmp (and the repository), so every path must be there

    def __init__(self, name):
        self.name = name
        self.id = "ansible" + name.replace(".", "")
        self.collections = None
        self.version = None
        self.missing = None

    def probe(self):
        """Find out whether this runtime runs here: sets ``version`` or ``missing``; returns ``missing``."""
        self.missing = self._unavailable()
        if self.missing is None:
            self.version, self.missing = self._probe()
        return self.missing

    def __repr__(self):
        return "AnsibleRuntime(%s %s)" % (self.name, self.version or self.missing)

    # -- what a runtime defines ------------------------------------------------------------------------
    def _unavailable(self):
        """None when the installation is there, otherwise why not."""
        raise NotImplementedError

    def command(self, program, args, env=None):
        """(argv, env for subprocess.run) running ``program`` (``ansible-playbook``, ...) with ``args``; ``env`` is
        the environment it would have on this machine (default :func:`clean_env`), ANSIBLE_* settings included."""
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------------
    def run(self, program, args, env=None, timeout=600, check=True):
        """CompletedProcess (text) of ``program args``; raises AssertionError with its output when ``check`` and it failed."""
        argv, environ = self.command(program, args, env)
        done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError("%s (ansible-core %s) exited %d:\n%s\n%s" % (
                program, self.name, done.returncode, done.stdout[-6000:], done.stderr[-3000:]))
        return done

    def _probe(self):
        try:
            out = self.run("ansible", ["--version"], timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, "ansible %s does not run here: %s" % (self.name, exc)
        first = out.stdout.splitlines()[0] if out.stdout else ""
        if out.returncode != 0 or "[core " not in first:
            return None, "ansible %s does not run here (exit %d): %s%s" % (
                self.name, out.returncode, out.stdout[-500:], out.stderr[-1000:])
        return first.split("[core ", 1)[1].rstrip("]"), None

    def install(self, work):
        """Build the collection from this checkout with this version's ``ansible-galaxy`` and install it under
        ``work`` (a directory under /tmp, which the chroot sees); sets and returns ``collections``."""
        work = str(work)
        built = self.run("ansible-galaxy", ["collection", "build", ROOT, "--output-path", work, "--force"])
        tarball = built.stdout.strip().split()[-1]
        target = os.path.join(work, "collections")
        self.run("ansible-galaxy", ["collection", "install", "--force", "-p", target, tarball])
        assert os.path.isfile(os.path.join(target, "ansible_collections", "airgap", "images", "plugins", "modules",
                                           "image_save.py")), target
        self.collections = target
        return target


class VenvRuntime(AnsibleRuntime):
    """ansible-core installed in a venv on this machine; its Python runs the modules too."""

    def __init__(self, name, bindir, setup, python=None):
        self.bindir = bindir
        self.setup = setup
        self.python = python or os.path.join(bindir, "python")
        super().__init__(name)

    def _unavailable(self):
        if not os.path.exists(os.path.join(self.bindir, "ansible-playbook")):
            return "ansible-core %s is not installed in %s: run %s" % (self.name, os.path.dirname(self.bindir), self.setup)
        return None

    def command(self, program, args, env=None):
        return [os.path.join(self.bindir, program)] + [str(a) for a in args], clean_env() if env is None else env

    def _probe(self):
        version, missing = AnsibleRuntime._probe(self)
        if version and not version.startswith(self.name + "."):
            return None, "%s has ansible-core %s, not %s: run %s" % (os.path.dirname(self.bindir), version, self.name, self.setup)
        return version, missing


class ChrootRuntime(AnsibleRuntime):
    """ansible-core in /opt/ansible inside Debian unstable's chroot (.build/current/chroot)."""

    python = CHROOT_ANSIBLE + "/bin/python3"
    setup = "make current-engines"
    files_under_tmp = True

    def __init__(self, name, binds=()):
        self.binds = [ROOT] + list(binds)
        super().__init__(name)

    def _unavailable(self):
        if not os.path.exists(os.path.join(engines.CURRENT_CHROOT, CHROOT_ANSIBLE.lstrip("/"), "bin", "ansible-playbook")):
            return "ansible-core %s is not set up in %s: run %s" % (self.name, engines.CURRENT_CHROOT, self.setup)
        if os.geteuid() != 0:
            return "ansible-core %s runs in a chroot, which needs root" % self.name
        return None

    def command(self, program, args, env=None):
        # chroot_command starts the program with ``env -i PATH=… HOME=/root …``: Ansible's own variables go in
        # as NAME=VALUE words before it; the rest of the host's environment stays outside.
        env = clean_env() if env is None else env
        words = ["%s=%s" % item for item in sorted(env.items()) if item[0].startswith("ANSIBLE_")]
        argv = engines.chroot_command(words + [CHROOT_ANSIBLE + "/bin/" + program] + [str(a) for a in args],
                                      binds=self.binds)
        return argv, None


NAMES = ("2.16", "2.19", "2.21")
_RUNTIMES = {}


def runtime(name):
    """The :class:`AnsibleRuntime` called ``name`` (one of :data:`NAMES`), probed once per process."""
    if name not in _RUNTIMES:
        if name == "2.16":
            made = VenvRuntime(name, os.path.join(ANSIBLE_216, "bin"), "make ansible-versions")
        elif name == "2.19":
            made = default_runtime()
        elif name == "2.21":
            made = ChrootRuntime(name)
        else:
            raise ValueError("no ansible runtime %r (known: %s)" % (name, ", ".join(NAMES)))
        made.probe()
        _RUNTIMES[name] = made
    return _RUNTIMES[name]


def default_runtime():
    """The .venv's ansible-core (2.19) and this interpreter for the modules: what the tests use when they name
    no runtime (not probed)."""
    return VenvRuntime("2.19", VENV_BIN, "make venv", python=sys.executable)
