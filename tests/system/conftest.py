# -*- coding: utf-8 -*-
# Copyright (c) airgap.images contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Real engines as pytest fixtures (see tests/system/engines.py).

Session fixtures start each engine once, on first use, under one temporary
directory; everything is stopped, killed, unmounted and removed at the end of
the session, whether tests passed or not.  The ``*_factory`` fixtures start
extra, empty engines that are stopped at the end of the test that made them.

Any test that uses one of these fixtures is marked ``engines``
(``pytest -m engines`` / ``-m "not engines"``).

Fixtures (classes in engines.py; every ``cli``-style helper returns a
CompletedProcess with text output, raises EngineCommandError on a non-zero
exit, and takes ``check=False``, ``text=False``, ``input=``, ``timeout=``):

* ``dockerd`` / ``dockerd_factory()`` -> Dockerd: ``.socket``, ``.host`` (unix://…),
  ``.data_root``, ``.cli(*args)`` (Debian's /usr/bin/docker -H …, legacy builder),
  ``.inspect(*names)``, ``.image_ids()``, ``.api(method, path)``, ``.ping()``, ``.log_tail()``.
* ``containerd`` / ``containerd_factory(namespace="k8s.io")`` -> Containerd: ``.address``,
  ``.namespace``, ``.ctr(*args, namespace=…)``, ``.image_refs(namespace=None)``.
* ``podman`` / ``podman_factory()`` -> Podman: ``.cli(*args)``, ``.image_ids()``, ``.root``,
  ``.service()`` (starts the Docker-compatible API once, returns the socket path),
  ``.docker_cli(*args)`` (Debian's docker CLI against that socket).
* ``registry`` / ``registry_factory(auth=("user", "pw"), tls=True)`` -> Registry: ``.host``
  (127.0.0.1:PORT), ``.url``, ``.auth``, ``.ca_path``, ``.cert_dir`` (holds ca.crt only),
  ``.get(path, auth=True)`` -> (status, headers, body), ``.catalog()``, ``.trust_in_docker()``.
* ``skopeo`` -> Skopeo: ``.run(*args)`` (``--insecure-policy``, private registries.conf,
  no remote short names), ``.inspect(ref, *args)`` -> dict.
* ``docker_images`` -> {name: BuiltImage(.name, .id, .diff_ids, .files, .inspect)} for
  airgap-test/base:1, lib:1 (base + 1 layer), app-a:1 and app-b:1 (lib + 1 layer each),
  built in ``dockerd``; DiffIDs are the same on every run, IDs are not.
* ``docker_images_archive`` -> path of one ``docker save`` tar of all four.
* ``engines`` -> Engines, the owner of all of the above (``.dir``, ``.stop(engine)``).
* ``ansible_runtime`` -> AnsibleRuntime (tests/system/ansible_runtimes.py), parametrized over ansible-core 2.16,
  2.19 and 2.21 (ids ``ansible216``, ...): ``.command(program, args, env)``, ``.python`` (the modules'
  interpreter), ``.collections`` (airgap.images built and installed with that version's ansible-galaxy);
  skipped, with the make target to run, where that version is not set up.
* ``runtime_playbook`` -> a Playbook (as ``playbook``) that runs on ``ansible_runtime``.
"""

import os
import signal

import pytest

from ansible_collections.airgap.images.tests.system import ansible_runtimes
from ansible_collections.airgap.images.tests.system.engines import Engines, build_test_images
from ansible_collections.airgap.images.tests.system.matrix import MatrixTable, register_markers
from ansible_collections.airgap.images.tests.system.playbooks import Playbook, build_and_install

ENGINE_FIXTURES = frozenset((
    "engines", "dockerd", "dockerd_factory", "containerd", "containerd_factory", "podman", "podman_factory",
    "registry", "registry_factory", "skopeo", "docker_images", "docker_images_archive",
))


MATRIX_TABLE = MatrixTable()
MATRIX_TABLE_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                 ".build", "engine-matrix.md")


def pytest_configure(config):
    """One marker per engine generation (``-m docker28``, ``-m podman58``, ...)."""
    register_markers(config)


def pytest_runtest_logreport(report):
    MATRIX_TABLE.record(report)


def pytest_terminal_summary(terminalreporter):
    """The engine generation x behaviour table of this run (also written to .build/engine-matrix.md)."""
    table = MATRIX_TABLE.render()
    if table:
        terminalreporter.write_sep("-", "engine matrix (tests/system/test_matrix.py)")
        terminalreporter.write(table)
        os.makedirs(os.path.dirname(MATRIX_TABLE_PATH), exist_ok=True)
        with open(MATRIX_TABLE_PATH, "w", encoding="utf-8") as out:
            out.write(table)


def pytest_collection_modifyitems(items):
    """Mark every test that uses an engine fixture with ``engines``."""
    for item in items:
        if ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engines)


def _raise_keyboard_interrupt(signum, frame):  # pylint: disable=unused-argument
    raise KeyboardInterrupt("SIGTERM")


@pytest.fixture(scope="session")
def engines():
    """The session's :class:`Engines`: owner of the temp dir and of every engine started in it.

    Set AIRGAP_KEEP_ENGINES=1 to keep the directory (logs, data) after the session.
    """
    if os.geteuid() != 0:
        pytest.fail("the engine fixtures need root (dockerd, containerd and podman run as root here)")
    # A SIGTERM (a CI time-out, say) unwinds through pytest so the daemons are stopped.
    previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    owner = Engines(keep=os.environ.get("AIRGAP_KEEP_ENGINES") == "1")
    try:
        yield owner
    finally:
        signal.signal(signal.SIGTERM, previous)
        owner.close()


@pytest.fixture(scope="session")
def dockerd(engines):  # pylint: disable=redefined-outer-name
    """The session's dockerd 20.10 (vfs): a :class:`Dockerd`."""
    return engines.dockerd()


@pytest.fixture(scope="session")
def containerd(engines):  # pylint: disable=redefined-outer-name
    """The session's standalone containerd 1.6: a :class:`Containerd` (default namespace k8s.io)."""
    return engines.containerd()


@pytest.fixture(scope="session")
def podman(engines):  # pylint: disable=redefined-outer-name
    """The session's podman 4.3 (vfs, private storage): a :class:`Podman`; ``podman.service()`` for the API socket."""
    return engines.podman()


@pytest.fixture(scope="session")
def registry(engines):  # pylint: disable=redefined-outer-name
    """The session's plain-HTTP registry on 127.0.0.1: a :class:`Registry`."""
    return engines.registry()


@pytest.fixture(scope="session")
def skopeo(engines):  # pylint: disable=redefined-outer-name
    """A :class:`Skopeo` helper with --insecure-policy and private config."""
    return engines.skopeo()


def _factory(engines, start):  # pylint: disable=redefined-outer-name
    made = []

    def make(*args, **kwargs):
        engine = start(*args, **kwargs)
        made.append(engine)
        return engine

    yield make
    for engine in reversed(made):
        engines.stop(engine)


@pytest.fixture
def dockerd_factory(engines):  # pylint: disable=redefined-outer-name
    """``dockerd_factory()`` starts another, empty dockerd; it is stopped when the test ends."""
    yield from _factory(engines, engines.dockerd)


@pytest.fixture
def containerd_factory(engines):  # pylint: disable=redefined-outer-name
    """``containerd_factory(namespace="k8s.io")`` starts another, empty containerd; stopped when the test ends."""
    yield from _factory(engines, engines.containerd)


@pytest.fixture
def podman_factory(engines):  # pylint: disable=redefined-outer-name
    """``podman_factory()`` gives another podman with empty storage; its service is stopped when the test ends."""
    yield from _factory(engines, engines.podman)


@pytest.fixture
def registry_factory(engines):  # pylint: disable=redefined-outer-name
    """``registry_factory(auth=("user", "pw"), tls=True)`` starts another registry; stopped when the test ends."""
    yield from _factory(engines, engines.registry)


@pytest.fixture(scope="session")
def docker_images(dockerd, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """{name: BuiltImage} for airgap-test/{base,lib,app-a,app-b}:1, built in the session dockerd."""
    return build_test_images(dockerd, str(tmp_path_factory.mktemp("docker-images")))


@pytest.fixture(scope="session")
def docker_images_archive(dockerd, docker_images, tmp_path_factory):  # pylint: disable=redefined-outer-name
    """Path of one ``docker save`` archive (legacy format) holding all four test images."""
    path = str(tmp_path_factory.mktemp("docker-save") / "test-images.tar")
    dockerd.cli("save", "-o", path, *docker_images)
    return path


@pytest.fixture(scope="session")
def collections_path(tmp_path_factory):
    """The collection built and installed with ansible-galaxy, as users get it."""
    return build_and_install(tmp_path_factory.mktemp("galaxy"))


@pytest.fixture
def playbook(collections_path, tmp_path):  # pylint: disable=redefined-outer-name
    """``playbook.run([task, ...], check=, diff=, expect_failure=, python=)`` → (registered results, stdout)."""
    return Playbook(collections_path, str(tmp_path))


@pytest.fixture(scope="session", params=ansible_runtimes.NAMES, ids=lambda name: "ansible" + name.replace(".", ""))
def ansible_runtime(request, tmp_path_factory):
    """An :class:`AnsibleRuntime` with the collection built and installed by its own ansible-galaxy (once per session);
    skips, saying what to run, where that ansible-core is not set up."""
    runtime = ansible_runtimes.runtime(request.param)
    if runtime.missing:
        pytest.skip(runtime.missing)
    if runtime.collections is None:
        work = str(tmp_path_factory.mktemp("galaxy-" + runtime.id))
        if runtime.files_under_tmp and not os.path.realpath(work).startswith("/tmp/"):
            pytest.skip("ansible-core %s needs the test's files under /tmp, which its chroot shares; pytest's are in %s"
                        % (runtime.name, work))
        runtime.install(work)
    return runtime


@pytest.fixture
def runtime_playbook(ansible_runtime, tmp_path):  # pylint: disable=redefined-outer-name
    """A :class:`Playbook` (as ``playbook``) run by ``ansible_runtime``'s ansible-playbook, its Python running the modules."""
    return Playbook(ansible_runtime.collections, str(tmp_path), runtime=ansible_runtime)
