# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run ``ansible-test sanity`` on this collection on a machine that reaches only PyPI.

Usage: ``.venv/bin/python tests/sanity/run_sanity.py [ansible-test sanity options]``
(``make sanity`` does this).  Two things stand in the way of a plain run here:

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

Nothing is skipped here: every sanity test of ansible-core 2.19 runs offline
this way (``shellcheck`` needs the Debian package, which ``make deps`` installs).
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


def ansible_test_pip_versions():
    """The pip versions ansible-test bootstraps into its virtual environments."""
    import ansible_test  # pylint: disable=import-outside-toplevel

    source = os.path.join(os.path.dirname(ansible_test.__file__), "_internal", "python_requirements.py")
    with open(source, encoding="utf-8") as handle:
        versions = set(re.findall(r"""\bpip\s*=\s*['"]([0-9][0-9.]*)['"]""", handle.read()))
    if not versions:
        raise SystemExit("run_sanity: cannot find the pip version in %s" % source)
    return sorted(versions)


def install_get_pip_stand_in():
    """Put the stand-in where ansible-test looks for its cached get-pip script."""
    cache = os.path.expanduser(os.path.join("~", ".ansible", "test", "cache"))
    os.makedirs(cache, exist_ok=True)
    for version in ansible_test_pip_versions():
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


def main(argv):
    """Copy, run ansible-test sanity there, and return its exit code."""
    install_get_pip_stand_in()
    work = tempfile.mkdtemp(prefix="airgap-sanity-")
    tree = os.path.join(work, "ansible_collections", NAMESPACE, NAME)
    copy_tree(tree)
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
