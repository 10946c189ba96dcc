# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""pytest set-up shared by tests/unit and tests/system.

Tests import the collection as ``ansible_collections.airgap.images...``.  The
Makefile puts ``.build`` on PYTHONPATH, where
``.build/ansible_collections/airgap/images`` links back to the repository root;
a bare ``pytest`` run gets the same from here.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, ".build")


def _ensure_collection_path():
    try:
        import ansible_collections.airgap.images  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
        return
    except ImportError:
        pass
    link = os.path.join(BUILD, "ansible_collections", "airgap", "images")
    if not os.path.lexists(link):
        os.makedirs(os.path.dirname(link), exist_ok=True)
        try:
            os.symlink(os.path.join("..", "..", ".."), link)
        except FileExistsError:
            pass
    if BUILD not in sys.path:
        sys.path.insert(0, BUILD)


_ensure_collection_path()


def pytest_configure(config):
    """Register this project's markers."""
    config.addinivalue_line("markers", "engines: needs real container engines (dockerd, containerd, podman, registry, skopeo)")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")
