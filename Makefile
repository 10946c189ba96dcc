# airgap.images — developer entry points.
#
#   make test     everything CI runs: deps, venv, ansible-test sanity, pytest (unit + system)
#   make demo     the core end to end, without any engine
#   make deps     Debian packages the system tests need (apt-get; skipped when present)
#   make current-engines  Debian unstable's engines for the matrix, under .build/current (tests/system/current_engines.sh)
#   make venv     .venv with requirements-test.txt
#   make sanity   ansible-test sanity on a copy of the tree (tests/sanity/run_sanity.py), ansible-core 2.19 (.venv)
#   make ansible-versions  .build/ansible-2.16: the oldest supported ansible-core (tests/ansible/requirements-2.16.txt)
#   make sanity-2.16  the same with ansible-core 2.16 (.build/ansible-2.16, Python 3.11)
#   make sanity-2.21  the same with the newest ansible-core, inside the current-engines chroot (Python 3.14)
#   make galaxy-import  build the collection tarball and run galaxy-importer on it, as Galaxy does on upload
#   make unit     pytest tests/unit
#   make system   pytest tests/system (real engines; needs root)
#   make bench    bench/bench_archive.py (make bench-modules, bench-stores, bench-separate, bench-load, bench-rollout,
#                 bench-passthrough [BASELINE=<other checkout>], bench-noop, bench-save-phases: the others)
#   make clean    remove .venv, .build and caches
#
# Extra pytest options: make unit PYTEST_ARGS='-k tar -x'
# Extra ansible-test options: make sanity SANITY_ARGS='--test pylint'

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
.DELETE_ON_ERROR:

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
VPY := $(VENV)/bin/python
BUILD := .build
COLLECTION_LINK := $(BUILD)/ansible_collections/airgap/images
VENV_STAMP := $(VENV)/.requirements-installed
TIMINGS := $(BUILD)/timings.txt

# The oldest ansible-core that meta/runtime.yml admits, in a venv of its own beside .venv's 2.19 (the newest,
# 2.21, needs Python >= 3.12: it is /opt/ansible in the current-engines chroot).  The module and role tests
# (tests/system/ansible_runtimes.py) and sanity-2.16 run with it.
ANSIBLE_216 := $(BUILD)/ansible-2.16
ANSIBLE_216_PY := $(ANSIBLE_216)/bin/python
ANSIBLE_216_STAMP := $(ANSIBLE_216)/.requirements-installed

# galaxy-importer (what Ansible Galaxy and Automation Hub run on an upload) in a venv of its own: it pins its
# own ansible-core and ansible-lint.
GALAXY_VENV := $(BUILD)/galaxy-venv
GALAXY_PY := $(GALAXY_VENV)/bin/python
GALAXY_STAMP := $(GALAXY_VENV)/.requirements-installed
GALAXY_OUT := $(BUILD)/galaxy
# A log line galaxy-importer or a tool it runs reports a problem with.
GALAXY_PROBLEM := ^(WARNING|ERROR|CRITICAL):|\[(WARNING|ERROR|DEPRECATION WARNING)\]|Traceback

# Debian 12 packages for the engines the system tests start (tests/system/engines.py),
# the openssl CLI (test CA), shellcheck (ansible-test's shellcheck sanity test), GNU time (peak RSS in bench/),
# openssh-server and sudo (the rollout over real SSH with become: tests/system/sshd.py; no service is started).
# Installed with their Recommends, as verified on this machine kind; the fixtures run
# as root on vfs and need neither uidmap nor fuse-overlayfs, which podman recommends.
# debootstrap makes the Debian unstable chroot of the current engine generation (make current-engines).
APT_PACKAGES := docker.io containerd runc skopeo podman docker-registry openssl ca-certificates shellcheck time debootstrap openssh-server sudo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_ENV := DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
APT_GET := $(SUDO) env $(APT_ENV) apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0

PYTEST_ARGS ?=
SANITY_ARGS ?=
PYTEST := PYTHONPATH=$(CURDIR)/$(BUILD) $(VPY) -m pytest -ra --durations=40 --timeout=900 $(PYTEST_ARGS)

# Filters pip's complaints about this machine's configured-but-absent local indexes.
PIP_NOISE := grep -v "^WARNING: Location 'file://" || true

.PHONY: test deps current-engines venv link ansible-versions sanity sanity-2.16 sanity-2.21 galaxy-import unit system demo bench bench-modules bench-stores bench-separate bench-load bench-rollout bench-passthrough bench-noop bench-save-phases clean

# Each stage is timed into $(TIMINGS); a failing stage is recorded and the next ones
# still run, and the target fails at the end.  pytest runs last, so its summary line
# is the last thing printed.
define timed
t0=$$(date +%s); if $(2); then st=ok; else st=FAILED; fi; \
printf '%s %ss %s\n' "$(1)" "$$(( $$(date +%s) - t0 ))" "$$st" >> $(TIMINGS)
endef

test:
	@mkdir -p $(BUILD) && : > $(TIMINGS)
	@$(call timed,deps,$(MAKE) --no-print-directory deps); tail -n1 $(TIMINGS) | sed 's/^/make test: /'; \
	  grep -q '^deps .* ok$$' $(TIMINGS)
	@$(call timed,venv,$(MAKE) --no-print-directory venv link); tail -n1 $(TIMINGS) | sed 's/^/make test: /'; \
	  grep -q '^venv .* ok$$' $(TIMINGS)
	@$(call timed,ansible-versions,$(MAKE) --no-print-directory ansible-versions); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,current-engines,$(MAKE) --no-print-directory current-engines); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,sanity,$(MAKE) --no-print-directory sanity); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,sanity-2.16,$(MAKE) --no-print-directory sanity-2.16); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,sanity-2.21,$(MAKE) --no-print-directory sanity-2.21); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,galaxy,$(MAKE) --no-print-directory galaxy-import); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
	@$(call timed,pytest,$(PYTEST) tests/unit tests/system); \
	  ! grep -q ' FAILED$$' $(TIMINGS)

deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" 2>/dev/null | grep -q '^ii' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: Debian packages present"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	made_policy=""; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
	  printf '#!/bin/sh\n# make deps: do not start services while installing\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null; \
	  $(SUDO) chmod 755 /usr/sbin/policy-rc.d; made_policy=1; \
	fi; \
	trap '[ -z "$$made_policy" ] || $(SUDO) rm -f /usr/sbin/policy-rc.d' EXIT; \
	$(APT_GET) update -qq; \
	$(APT_GET) install -y -qq $$missing >/dev/null; \
	for p in $$missing; do dpkg-query -W -f='$${db:Status-Abbrev}' "$$p" | grep -q '^ii' || { echo "deps: $$p did not install" >&2; exit 1; }; done; \
	echo "deps: installed$$missing"

# The current engine generation (Debian unstable's docker 28, containerd 2.1, crane; podman 5, skopeo 1.22 and
# the newest ansible-core in a chroot) under .build/current, rebuilt only when the package versions change.
current-engines: deps
	bash tests/system/current_engines.sh

$(VPY):
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV_STAMP): requirements.txt requirements-test.txt | $(VPY)
	$(VPY) -m pip install -q -r requirements-test.txt 2>&1 | { $(PIP_NOISE); }
	@touch $@

venv: $(VENV_STAMP)

# .build/ansible_collections/airgap/images -> the repository root, so that
# PYTHONPATH=.build imports ansible_collections.airgap.images.* from this tree.
link:
	@if [ -L $(COLLECTION_LINK) ] && [ "$$(readlink -f $(COLLECTION_LINK))" = "$$(readlink -f .)" ]; then exit 0; fi; \
	if [ -e $(COLLECTION_LINK) ] && [ ! -L $(COLLECTION_LINK) ]; then \
	  echo "$(COLLECTION_LINK) exists and is not a symlink; remove it" >&2; exit 1; fi; \
	mkdir -p $(dir $(COLLECTION_LINK)) && ln -sfn ../../.. $(COLLECTION_LINK)

$(ANSIBLE_216_PY):
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(ANSIBLE_216)

$(ANSIBLE_216_STAMP): tests/ansible/requirements-2.16.txt | $(ANSIBLE_216_PY)
	$(ANSIBLE_216_PY) -m pip install -q -r tests/ansible/requirements-2.16.txt 2>&1 | { $(PIP_NOISE); }
	@touch $@

ansible-versions: $(ANSIBLE_216_STAMP)

sanity: venv
	$(VPY) tests/sanity/run_sanity.py $(SANITY_ARGS)

sanity-2.16: ansible-versions
	$(ANSIBLE_216_PY) tests/sanity/run_sanity.py $(SANITY_ARGS)

# Inside the chroot tests/system/current_engines.sh made (make current-engines; not rebuilt from here).
sanity-2.21: venv
	$(VPY) tests/sanity/run_sanity.py --current-chroot $(SANITY_ARGS)

$(GALAXY_PY):
	@test -n "$(PYTHON)" || { echo "no python3.11 or python3 on PATH" >&2; exit 1; }
	$(PYTHON) -m venv $(GALAXY_VENV)

$(GALAXY_STAMP): tests/galaxy/requirements.txt | $(GALAXY_PY)
	$(GALAXY_PY) -m pip install -q -r tests/galaxy/requirements.txt 2>&1 | { $(PIP_NOISE); }
	@touch $@

# Fails on any warning or error galaxy-importer logs (ansible-doc, ansible-lint, flake8, metadata), and shows them.
galaxy-import: $(GALAXY_STAMP)
	@rm -rf $(GALAXY_OUT) && mkdir -p $(GALAXY_OUT)/tmp
	@$(GALAXY_VENV)/bin/ansible-galaxy collection build --output-path $(GALAXY_OUT) . | sed 's/^/galaxy-import: /'
	@cd $(GALAXY_OUT) && status=0; \
	  env PATH="$(CURDIR)/$(GALAXY_VENV)/bin:$$PATH" GALAXY_IMPORTER_CONFIG=$(CURDIR)/tests/galaxy/galaxy-importer.cfg \
	    GALAXY_IMPORTER_ANSIBLE_LOCAL_TMP=$(CURDIR)/$(GALAXY_OUT)/tmp GALAXY_IMPORTER_TMP_ROOT_DIR=$(CURDIR)/$(GALAXY_OUT)/tmp \
	    $(CURDIR)/$(GALAXY_PY) -m galaxy_importer.main airgap-images-*.tar.gz > importer.log 2>&1 || status=$$?; \
	  grep -v '^Loading \|^Linting .* via flake8\.\.\.$$' importer.log | sed 's/^/galaxy-import: /'; \
	  problems=$$(grep -cE '$(GALAXY_PROBLEM)' importer.log || true); \
	  if [ "$$status" != 0 ] || [ "$$problems" != 0 ] || ! grep -q '^Importer processing completed successfully$$' importer.log; then \
	    echo "galaxy-import: FAILED: galaxy-importer exited $$status and reported $$problems warning(s) or error(s):" >&2; \
	    grep -E '$(GALAXY_PROBLEM)' importer.log | sed 's/^/galaxy-import:   /' >&2; \
	    echo "galaxy-import: full log: $(GALAXY_OUT)/importer.log" >&2; exit 1; \
	  fi; \
	  echo "galaxy-import: $$(ls airgap-images-*.tar.gz) imports with no warnings and no errors"

unit: venv link
	$(PYTEST) tests/unit

system: deps venv link
	$(PYTEST) tests/system

demo: venv link
	$(VPY) demo/demo.py

bench: venv link
	$(VPY) bench/bench_archive.py
bench-modules: venv link ; $(VPY) bench/bench_modules.py
bench-stores: venv link ; $(VPY) bench/bench_stores.py
bench-separate: venv link ; $(VPY) bench/bench_separate.py
bench-load: venv link ; $(VPY) bench/bench_load.py
bench-rollout: venv link ; $(VPY) bench/bench_rollout.py
bench-noop: venv link ; bash bench/bench_noop.sh
bench-passthrough: venv link ; $(VPY) bench/bench_passthrough.py $(if $(BASELINE),--baseline $(BASELINE))
bench-save-phases: venv link ; $(VPY) bench/bench_save_phases.py

clean:
	rm -rf $(VENV) $(BUILD) tests/output .pytest_cache .hypothesis bench/results
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
