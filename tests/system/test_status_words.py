# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What Ansible prints for each module's task: ``changed`` when it changed something, ``ok`` when not, never ``skipping``.

A result key Ansible reserves changes what it shows: image_load used to return the images it found present as
``skipped``, so a load that had nothing to do printed ``skipping: [localhost]`` and counted as skipped in PLAY RECAP.
Each module runs twice through ansible-playbook (a run that changes things, then one that finds them done); the
status word of each task, the recap and the absence of any warning are checked.  Every test runs on each
ansible-core users run (the ``ansible_runtime`` fixture: the oldest supported, 2.16; .venv's 2.19; the newest,
2.21 on Python 3.14): what one version accepts in silence another may warn about.
"""

import re

import pytest

from ansible_collections.airgap.images.tests.system.playbooks import recap, task_status, warning_lines

BASE, LIB = "airgap-test/base:1", "airgap-test/lib:1"
APPS = ["airgap-test/app-a:1", "airgap-test/app-b:1"]

# Result keys Ansible gives a meaning of its own; ``changed``, ``msg`` and ``diff`` are ours to set as Ansible means them.
RESERVED = frozenset((
    "failed", "skipped", "rc", "results", "stdout", "stderr", "stdout_lines", "stderr_lines", "warnings", "deprecations",
    "exception", "ansible_facts", "backup_file", "module_stderr", "module_stdout", "item", "skip_reason", "attempts",
    "retries", "unreachable",
))


@pytest.fixture
def playbook(runtime_playbook):
    """Each test here runs on every ansible-core of ``ansible_runtime`` (ids ansible216, ansible219, ansible221)."""
    return runtime_playbook


def task(name, module, **args):
    return {"name": name, "airgap.images." + module: args}


def reserved_keys(result):
    """The keys of a registered result that Ansible reserves (``failed: false`` is Ansible's own, added to every result)."""
    return sorted(key for key in result if (key in RESERVED or key.startswith("ansible_")) and not (key == "failed" and not result[key]))


def assert_reported(done, words):
    """Each task printed the status word ``words`` names for it, the recap counts the changed ones and skips none,
    no result uses a reserved key, and neither stdout nor stderr has a warning."""
    printed = {name: task_status(done.stdout, name) for name in words}
    assert printed == words, done.stdout[-6000:]
    counts = recap(done.stdout)
    assert counts["skipped"] == 0 and counts["failed"] == 0, done.stdout[-3000:]
    assert counts["changed"] == list(words.values()).count("changed"), done.stdout[-3000:]
    assert [reserved_keys(result) for result in done.results] == [[] for _result in done.results]
    assert warning_lines(done.stdout) + warning_lines(done.stderr) == []


def test_oci_layout_modules_print_changed_then_ok(playbook, docker_images_archive, tmp_path):
    oci = dict(engine="oci", engine_host=str(tmp_path / "layout"))
    bundle = str(tmp_path / "apps.tar")
    tasks = [
        task("Load into an OCI layout", "image_load", src=docker_images_archive, **oci),
        task("Save from the OCI layout", "image_save", images=APPS, dest=bundle, **oci),
        task("Separate from the OCI layout", "image_separate", images=APPS, base=BASE, lib=LIB, dest=str(tmp_path / "separated"), **oci),
        task("Describe the archive", "image_archive_info", path=bundle),
        task("Ask the OCI layout", "image_store_info", images=APPS, **oci),
    ]
    first = playbook.play(tasks)
    assert_reported(first, {"Load into an OCI layout": "changed", "Save from the OCI layout": "changed",
                            "Separate from the OCI layout": "changed", "Describe the archive": "ok", "Ask the OCI layout": "ok"})
    loaded = first.results[0]
    assert len(loaded["loaded"]) == 4 and loaded["present"] == [] and loaded["msg"].endswith("present 0")
    second = playbook.play(tasks)
    assert_reported(second, {"Load into an OCI layout": "ok", "Save from the OCI layout": "ok", "Separate from the OCI layout": "ok",
                             "Describe the archive": "ok", "Ask the OCI layout": "ok"})
    reloaded = second.results[0]
    assert reloaded["loaded"] == [] and reloaded["msg"] == "loaded 0 image(s), tagged 0, present 4"
    assert [entry["reason"] for entry in reloaded["present"]] == ["present with all its tags"] * 4


def test_save_runs_in_the_worker_on_the_controller_and_as_a_module_with_another_python(playbook, docker_images_archive, tmp_path):
    """On the controller with its own Python, image_save runs in Ansible's worker process (no AnsiballZ payload, no
    new process); with another interpreter it runs as a module. Both write the same bytes and report the same."""
    oci = dict(engine="oci", engine_host=str(tmp_path / "layout"))
    playbook.play([task("Load into an OCI layout", "image_load", src=docker_images_archive, **oci)])
    in_worker = "running airgap.images.image_save in the worker process"
    saves = {}
    for way, python in (("worker", None), ("module", "/usr/bin/python3")):
        tasks = [task("Save from the OCI layout", "image_save", images=APPS, dest=str(tmp_path / (way + ".tar")), **oci)]
        first = playbook.play(tasks, python=python, verbose=True)
        printed = first.stdout + first.stderr  # ansible-core 2.21 writes -vvv lines to stderr
        assert (in_worker in printed) == (way == "worker"), printed[-6000:]
        module_file = re.search(r"^Using module file \S*/image_save\.py$", printed, re.M)
        assert bool(module_file) == (way == "module"), printed[-6000:]
        assert_reported(first, {"Save from the OCI layout": "changed"})
        assert_reported(playbook.play(tasks, python=python), {"Save from the OCI layout": "ok"})
        saves[way] = first.results[0]
    with open(str(tmp_path / "worker.tar"), "rb") as worker, open(str(tmp_path / "module.tar"), "rb") as module:
        assert worker.read() == module.read()
    saves["module"]["msg"] = saves["module"]["msg"].replace("module.tar", "worker.tar")
    drop = ("dest", "duration_s", "throughput_mb_s", "invocation")
    assert {k: v for k, v in saves["worker"].items() if k not in drop} == {k: v for k, v in saves["module"].items() if k not in drop}


def test_every_image_module_runs_in_the_worker_on_the_controller_with_the_result_it_gives_as_a_module(
        playbook, docker_images_archive, tmp_path):
    """image_load, image_archive_info and image_store_info (as image_save above): in the worker with the controller's
    own Python, as a module with another; the same status words and the same results either way."""
    results = {}
    for way, python in (("worker", None), ("module", "/usr/bin/python3")):
        oci = dict(engine="oci", engine_host=str(tmp_path / ("layout-" + way)))
        tasks = [task("Load", "image_load", src=docker_images_archive, **oci),
                 task("Describe the archive", "image_archive_info", path=docker_images_archive),
                 task("Ask the store", "image_store_info", images=APPS, **oci)]
        first = playbook.play(tasks, python=python, verbose=True)
        printed = first.stdout + first.stderr
        for name in ("image_load", "image_archive_info", "image_store_info"):
            assert ("running airgap.images.%s in the worker process" % name in printed) == (way == "worker"), printed[-6000:]
            assert bool(re.search(r"^Using module file \S*/%s\.py$" % name, printed, re.M)) == (way == "module"), printed[-6000:]
        assert_reported(first, {"Load": "changed", "Describe the archive": "ok", "Ask the store": "ok"})
        assert_reported(playbook.play(tasks[:1], python=python), {"Load": "ok"})
        results[way] = first.results
    drop = ("duration_s", "throughput_mb_s", "invocation", "msg")
    for worker, module in zip(results["worker"], results["module"]):
        assert {k: v for k, v in worker.items() if k not in drop} == {k: v for k, v in module.items() if k not in drop}


def test_docker_load_and_save_print_changed_then_ok(playbook, dockerd, dockerd_factory, docker_images, docker_images_archive, tmp_path):
    target = dockerd_factory()
    tasks = [
        task("Save from Docker", "image_save", images=APPS, dest=str(tmp_path / "docker.tar"), engine="docker", engine_host=dockerd.host),
        task("Load into Docker", "image_load", src=docker_images_archive, engine="docker", engine_host=target.host),
    ]
    first = playbook.play(tasks)
    assert_reported(first, {"Save from Docker": "changed", "Load into Docker": "changed"})
    assert sorted(first.results[1]["loaded"]) == sorted(image.id for image in docker_images.values())
    second = playbook.play(tasks)
    assert_reported(second, {"Save from Docker": "ok", "Load into Docker": "ok"})
    assert sorted(entry["id"] for entry in second.results[1]["present"]) == sorted(image.id for image in docker_images.values())


def test_pull_prints_changed_then_ok(playbook, registry_factory, docker_images, docker_images_archive, tmp_path):
    registry = registry_factory()  # its own: other tests count the session registry's repositories
    playbook.play([task("Fill the registry", "image_load", src=docker_images_archive, engine="registry",
                        engine_host=registry.host, insecure_registry=True)])
    pull = task("Pull into an OCI layout", "image_pull", images=APPS, registry=registry.host, registry_insecure=True,
                engine="oci", engine_host=str(tmp_path / "pulled"))
    first = playbook.play([pull])
    assert_reported(first, {"Pull into an OCI layout": "changed"})
    assert sorted(first.results[0]["loaded"]) == sorted(docker_images[app].id for app in APPS)
    second = playbook.play([pull])
    assert_reported(second, {"Pull into an OCI layout": "ok"})
    assert second.results[0]["bytes_pulled"] == 0 and len(second.results[0]["present"]) == 2
