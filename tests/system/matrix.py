# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The engine matrix as pytest parameters: one per generation, each with a marker of its name."""

import pytest

from ansible_collections.airgap.images.tests.system.engines import generations


def marker_name(generation):
    """``docker28-containerd-store`` -> ``docker28_containerd_store`` (markers are identifiers)."""
    return generation.name.replace("-", "_")


def generation_params(kind=None):
    """pytest params for every generation of ``kind`` (all kinds by default), id'd and marked by name."""
    return [pytest.param(gen, id=gen.name, marks=getattr(pytest.mark, marker_name(gen))) for gen in generations(kind)]


def register_markers(config):
    for gen in generations():
        config.addinivalue_line("markers", "%s: runs on the %s engine generation (%s)" % (
            marker_name(gen), gen.name, gen.version or gen.missing))


# The behaviour each test of test_matrix.py asserts, for the table printed at the end of a run.
BEHAVIOURS = {
    "test_save_then_unchanged_resave": "save + unchanged re-save",
    "test_save_then_unchanged_resave/convert": "convert + unchanged re-save",
    "test_separate_then_unchanged_reseparate": "separate + unchanged re-run",
    "test_load_check_mode_then_unchanged_reload": "check mode, load + unchanged re-load",
    "test_save_then_load_elsewhere_keeps_the_source_ids": "save, load elsewhere: same IDs",
    "test_tag_only_repair": "tag repair",
    "test_thin_load_completes_from_held_layers": "thin load",
    "test_load_after_removing_only_the_app_touches_nothing_else": "app removed, re-load: only it changes",
    "test_rollout_converges_and_reruns_unchanged": "rollout converges, re-run 0 changed",
}


def _generation_and_variant(ident):
    """``docker28-containerd-store-convert`` -> (``docker28-containerd-store``, ``convert``): the longest generation
    name the test id starts with, and the rest (a test's own parameter)."""
    names = [gen.name for gen in generations() if ident == gen.name or ident.startswith(gen.name + "-")]
    gen = max(names, key=len, default=ident)
    return gen, ident[len(gen) + 1:]


class MatrixTable:
    """Collects the outcome of each test_matrix.py test per generation; renders generation x behaviour."""

    def __init__(self):
        self.cells = {}

    def record(self, report):
        if "test_matrix.py::" not in report.nodeid or "[" not in report.nodeid:
            return
        test, ident = report.nodeid.split("::", 1)[1].rstrip("]").split("[", 1)
        gen, variant = _generation_and_variant(ident)
        test += "/" + variant if variant and variant != "as-is" else ""
        if test not in BEHAVIOURS or (report.when != "call" and report.passed):
            return
        if hasattr(report, "wasxfail"):
            outcome = "xfail (%s)" % ("image identity" if "identity" in report.wasxfail else report.wasxfail)
        elif report.skipped:
            outcome = "n/a (skipped)"
        else:
            outcome = report.outcome if report.when == "call" else "error"
        self.cells.setdefault(gen, {})[test] = outcome

    def render(self):
        if not self.cells:
            return ""
        lines = ["| generation | " + " | ".join(BEHAVIOURS.values()) + " |", "|---" * (len(BEHAVIOURS) + 1) + "|"]
        for gen in [g.name for g in generations() if g.name in self.cells]:
            lines.append("| %s | " % gen + " | ".join(self.cells[gen].get(test, "not run") for test in BEHAVIOURS) + " |")
        return "\n".join(lines) + "\n"
