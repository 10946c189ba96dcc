# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ``ansible-test sanity`` on this collection on a machine that reaches only PyPI.

Usage: ``.venv/bin/python tests/sanity/run_sanity.py [ansible-test sanity options]``
(``make sanity`` does this, with ansible-core 2.19; ``make sanity-2.16`` runs it with
``.build/ansible-2.16/bin/python``).  ``--current-chroot`` as the first option runs the newest ansible-core,
``/opt/ansible`` (Python 3.14) inside Debian unstable's chroot (``make current-engines``), instead of the
one beside this interpreter (``make sanity-2.21``; see :func:`chroot_run`).  Two things stand in the way of
a plain run here:

* ansible-test wants the collection under ``…/ansible_collections/airgap/images/``
  and dislikes symlinks, so the tree is *copied* (what git tracks or would
  track: ``.gitignore`` applies) to a temporary directory and run from there.
* Every sanity test with requirements gets its own virtual environment, into
  which ansible-test bootstraps pip by running ``get-pip-<version>.py``
  downloaded from a host this machine cannot reach.  It first looks for
  ``~/.ansible/test/cache/get_pip_<version>.py``; the stand-in installed there
  runs ``python -m ensurepip --upgrade`` in a subprocess and then
  ``python -m pip install`` with the same arguments (pip then installs from
  PyPI with this machine's own pip configuration).  A real get-pip script
  already in the cache is left alone; any other file there is replaced.

Nothing is skipped here: every sanity test of ansible-core 2.16, 2.19 and 2.21
runs offline this way (``shellcheck`` needs the Debian package, which ``make deps``
installs; the chroot run uses that same binary).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NAMESPACE, NAME = "airgap", "images"
STAND_IN_MARK = "# airgap.images offline get-pip stand-in"
REAL_GET_PIP_MARK = "# Hi There!"  # how pypa's get-pip.py starts

STAND_IN = STAND_IN_MARK + '''
"""Stand-in for get-pip.py: bootstrap pip with ensurepip, then pip-install the requested packages.

ansible-test runs it as ``python get_pip_X_Y.py [pip install options] pip==X.Y --no-setuptools --no-wheel``.
ensurepip runs in a subprocess: in-process it sets PIP_CONFIG_FILE=/dev/null, and pip would
then lose this machine's CA and index settings.
"""
import subprocess
import sys

args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install"] + args)
'''

# Paths never copied into the sanity tree when git cannot say what is tracked.
EXCLUDE_NAMES = {".git", ".venv", ".build", "__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache", ".tox"}
EXCLUDE_PATHS = {os.path.join("tests", "output"), os.path.join("bench", "results")}


def ansible_test_pip_versions(package_dir=None):
    """The pip versions ansible-test (the one at ``package_dir``, default this interpreter's) bootstraps into its
    virtual environments."""
    if package_dir is None:
        import ansible_test  # pylint: disable=import-outside-toplevel

        package_dir = os.path.dirname(ansible_test.__file__)
    source = os.path.join(package_dir, "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as handle:
        versions = set(re.findall(r"""\bpip\s*=\s*['"]([0-9][0-9.]*)['"]""", handle.read()))
    if not versions:
        raise SystemExit("run_sanity: cannot find the pip version in %s" % source)
    return sorted(versions)


def install_get_pip_stand_in(home=None, package_dir=None):
    """Put the stand-in where ansible-test looks for its cached get-pip script (under ``home``, default ``~``)."""
    cache = os.path.join(home or os.path.expanduser("~"), ".ansible", "test", "cache")
    os.makedirs(cache, exist_ok=True)
    for version in ansible_test_pip_versions(package_dir):
        path = os.path.join(cache, "get_pip_%s.py" % version.replace(".", "_"))
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as handle:
                current = handle.read()
            if current == STAND_IN or REAL_GET_PIP_MARK in current[:200]:
                continue  # ours and up to date, or the real get-pip script: keep it
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            handle.write(STAND_IN)
        os.replace(path + ".tmp", path)
        print("run_sanity: installed the offline get-pip stand-in %s" % path)


def files_to_copy():
    """Relative paths of the files in the collection: git's view (tracked + untracked, not ignored) if it has one."""
    if os.path.isdir(os.path.join(ROOT, ".git")) and shutil.which("git"):
        out = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                             capture_output=True, check=True).stdout
        return sorted({p for p in out.decode("utf-8", "surrogateescape").split("\0")
                       if p and os.path.lexists(os.path.join(ROOT, p))})
    found = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        rel_dir = os.path.relpath(dirpath, ROOT)
        dirnames[:] = [d for d in dirnames if d not in EXCLUDE_NAMES
                       and os.path.normpath(os.path.join(rel_dir, d)) not in EXCLUDE_PATHS]
        found.extend(os.path.normpath(os.path.join(rel_dir, f)) for f in filenames if not f.endswith(".pyc"))
    return sorted(found)


def copy_tree(dest):
    """Copy the collection's files to ``dest`` (symlinks stay symlinks, for the symlinks sanity test)."""
    for rel in files_to_copy():
        src = os.path.join(ROOT, rel)
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.islink(src):
            os.symlink(os.readlink(src), target)
        else:
            shutil.copy2(src, target)


def load_engines():
    """tests/system/engines.py (stdlib only), for its chroot_command and where the chroot is."""
    import importlib.util  # pylint: disable=import-outside-toplevel

    spec = importlib.util.spec_from_file_location("airgap_engines", os.path.join(ROOT, "tests", "system", "engines.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chroot_run(tree, work, argv):
    """ansible-test sanity with /opt/ansible (ansible-core 2.21, Python 3.14) inside Debian unstable's chroot.

    The copied tree is under the host's /tmp, which the chroot shares.  ansible-test passes its programs only
    PATH and HOME, so pip's settings inside come from a home of its own: ``~/.ansible/test/chroot-home`` on this
    machine, bound into the chroot at the same path (so it sits in the cache CI keeps, ``~/.ansible/test``).
    Its pip.conf points pip at the host CA the chroot holds (/etc/ssl/certs/host-ca.crt: PyPI is reached
    through this machine's TLS proxy), and its .ansible/test holds the stand-in and ansible-test's venvs for
    Python 3.14.  The host's shellcheck (Debian 12's; the chroot has none) is copied beside the tree, into the
    chroot's PATH: it links only libc, libgmp and libffi, which the chroot has."""
    engines = load_engines()
    chroot = engines.CURRENT_CHROOT
    python = "3.14"
    site = os.path.join(chroot, "opt", "ansible", "lib", "python" + python, "site-packages")
    if not os.path.isfile(os.path.join(chroot, "opt", "ansible", "bin", "ansible-test")) or not os.path.isdir(site):
        print("run_sanity: no ansible-test with Python %s in %s: run make current-engines" % (python, chroot), file=sys.stderr)
        return 1
    home = os.path.expanduser(os.path.join("~", ".ansible", "test", "chroot-home"))
    os.makedirs(os.path.join(home, ".config", "pip"), exist_ok=True)
    with open(os.path.join(home, ".config", "pip", "pip.conf"), "w", encoding="utf-8") as handle:
        handle.write("# run_sanity.py: pip inside the current-engines chroot\n[global]\n"
                     "cert = /etc/ssl/certs/host-ca.crt\ndisable-pip-version-check = true\ntimeout = 180\n")
    install_get_pip_stand_in(home, os.path.join(site, "ansible_test"))
    bindir = os.path.join(work, "bin")
    os.makedirs(bindir, exist_ok=True)
    shellcheck = shutil.which("shellcheck")
    if shellcheck:
        shutil.copy2(shellcheck, os.path.join(bindir, "shellcheck"))
    cmd = ["/opt/ansible/bin/ansible-test", "sanity", "--python", python, "--color", "no"] + list(argv)
    inner = ["HOME=" + home, "PATH=%s:/opt/ansible/bin:/usr/sbin:/usr/bin:/sbin:/bin" % bindir,
             "/bin/sh", "-c", 'cd "$1" && shift && exec "$@"', "run_sanity", tree] + cmd
    print("run_sanity: %s (in %s, inside %s)" % (" ".join(cmd), tree, chroot), flush=True)
    return subprocess.call(engines.chroot_command(inner, binds=[home]))


def main(argv):
    """Copy, run ansible-test sanity there, and return its exit code."""
    in_chroot = bool(argv) and argv[0] == "--current-chroot"
    argv = argv[1:] if in_chroot else argv
    if not in_chroot:
        install_get_pip_stand_in()
    work = tempfile.mkdtemp(prefix="airgap-sanity-", dir="/tmp" if in_chroot else None)
    tree = os.path.join(work, "ansible_collections", NAMESPACE, NAME)
    copy_tree(tree)
    if in_chroot:
        rc = chroot_run(tree, work, argv)
    else:
        bindir = os.path.dirname(sys.executable)
        ansible_test = os.path.join(bindir, "ansible-test")
        python = "%d.%d" % sys.version_info[:2]
        cmd = [ansible_test, "sanity", "--python", python, "--color", "no"] + list(argv)
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
        print("run_sanity: %s (in %s)" % (" ".join(cmd), tree), flush=True)
        rc = subprocess.call(cmd, cwd=tree, env=env)
    if rc == 0 or os.environ.get("AIRGAP_KEEP_SANITY") != "1":
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("run_sanity: kept %s for inspection" % work)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
