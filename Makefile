# airgap.images — developer entry points.
#
#   make test     everything CI runs: deps, venv, ansible-test sanity, pytest (unit + system)
#   make demo     the core end to end, without any engine
#   make deps     Debian packages the system tests need (apt-get; skipped when present)
#   make venv     .venv with requirements-test.txt
#   make sanity   ansible-test sanity on a copy of the tree (tests/sanity/run_sanity.py)
#   make unit     pytest tests/unit
#   make system   pytest tests/system (real engines; needs root)
#   make bench    bench/bench_archive.py (make bench-modules, bench-stores, bench-separate, bench-load, bench-rollout: the others)
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

# Debian 12 packages for the engines the system tests start (tests/system/engines.py),
# the openssl CLI (test CA), shellcheck (ansible-test's shellcheck sanity test) and GNU time (peak RSS in bench/).
# Installed with their Recommends, as verified on this machine kind; the fixtures run
# as root on vfs and need neither uidmap nor fuse-overlayfs, which podman recommends.
APT_PACKAGES := docker.io containerd runc skopeo podman docker-registry openssl ca-certificates shellcheck time
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_ENV := DEBIAN_FRONTEND=noninteractive NEEDRESTART_SUSPEND=1 NEEDRESTART_MODE=l
APT_GET := $(SUDO) env $(APT_ENV) apt-get -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0

PYTEST_ARGS ?=
SANITY_ARGS ?=
PYTEST := PYTHONPATH=$(CURDIR)/$(BUILD) $(VPY) -m pytest -ra --durations=10 --timeout=900 $(PYTEST_ARGS)

# Filters pip's complaints about this machine's configured-but-absent local indexes.
PIP_NOISE := grep -v "^WARNING: Location 'file://" || true

.PHONY: test deps venv link sanity unit system demo bench bench-modules bench-stores bench-separate bench-load bench-rollout clean

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
	@$(call timed,sanity,$(MAKE) --no-print-directory sanity); tail -n1 $(TIMINGS) | sed 's/^/make test: /'
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

sanity: venv
	$(VPY) tests/sanity/run_sanity.py $(SANITY_ARGS)

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

clean:
	rm -rf $(VENV) $(BUILD) tests/output .pytest_cache .hypothesis bench/results
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
