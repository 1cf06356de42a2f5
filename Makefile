# connect-identity-sync — one-command entry points.
#
#   make demo    build the function and its commands (the debug build `make test` runs),
#                start moto and the Connect emulator, send every events/*.json through the
#                real binary, print outcomes and dead letters, redrive one, reconcile the
#                contact centre with demo/idp-export.csv, stop everything
#   make test    every test: unit, property, adapter and end-to-end (needs .venv, made here)
#   make lint    rustfmt check and clippy with warnings as errors
#   make venv    the Python tools the tests and the demo use (.venv with moto[server])
#   make sam-local  every events/*.json through `sam local invoke` (the first) and a warm
#                `sam local start-lambda` (the others) of template.yaml (arm64
#                under qemu, in a local provided.al2023 stand-in image), the outcome table
#                checked against events/expected-outcomes.txt, then tests/sam: `sam local
#                start-lambda` and the SCIM endpoint under `sam local start-api`; installs
#                and starts what it needs (Docker; runs as root)
#   make bench   measure start-up, memory, CPU, quota use and size; writes BENCHMARKS.md (slow, not in CI)
#   make simulate  the fleet's deterministic simulation over SEEDS seeds (default 1000) from
#                FIRST (default 1); SEED=S replays one seed with its trace and the function's
#                log lines (`make test` runs 200 seeds); then, unless SEED is given, calm
#                fleets of 2 to 50 containers under a backlog of CALM_CHANGES changes
#                (default 2000), CALM_SEEDS seeds each (default 3): their quota use
#                (`make test` runs 600 changes, one seed)
#
# Needs only a Rust toolchain, Python 3 with pip and the openssl command (TLS tests);
# everything else is installed here.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    ?= .venv
# Cargo's target directory as cargo itself resolves it: target/, or CARGO_TARGET_DIR, or a
# cargo config's build.target-dir. Expanded only where a recipe uses it.
TARGET_DIR = $(shell $(CARGO) metadata --format-version 1 --no-deps | \
             $(PYTHON) -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')

# The demo builds what `make test` builds, once, in the dev profile: `--workspace` and one
# test target make cargo resolve features as `make test` does (dev-dependencies
# included), so the two share every compiled crate and neither rebuilds after the other.
# Release (fat LTO) stays for `make bench`, `make release` and `sam build`.
DEMO_BUILD = $(CARGO) build --workspace --bin connect-identity-sync --bin connect-identity-sync-redrive \
             --bin connect-identity-sync-reconcile --bin connect-identity-sync-scim --bin demo --test harness_smoke

# cargo-nextest runs each test in its own process (faster, isolated); plain cargo test
# works too. .config/nextest.toml starts the fleet and chaos tests of tests/e2e (minutes
# each, mostly waiting on the emulated quota) first, four at a time, beside the rest.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(NEXTEST),yes)
TEST_CMD = $(CARGO) nextest run --workspace --no-fail-fast --failure-output final
else
TEST_CMD = $(CARGO) test --workspace --no-fail-fast
endif

.PHONY: all build release demo test e2e lint fmt venv clean-venv help sam-local simulate

all: build

help:
	@sed -n '2,19p' Makefile

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --bin connect-identity-sync --bin connect-identity-sync-redrive

venv:
	@VENV=$(VENV) PYTHON=$(PYTHON) scripts/ensure-venv

demo: venv
	$(DEMO_BUILD)
	"$(TARGET_DIR)/debug/demo" --seed demo/contact-centre.json --events events

test: venv
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(TEST_CMD)

# Only the end-to-end tests of the built binary.
e2e: venv
ifeq ($(NEXTEST),yes)
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(CARGO) nextest run --no-fail-fast -E 'binary(e2e)'
else
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(CARGO) test --no-fail-fast --test e2e
endif

# The simulation needs no venv: everything is in memory.
SEEDS ?= 1000
FIRST ?= 1
CALM_CHANGES ?= 2000
CALM_SEEDS ?= 3
simulate:
	SIM_SEEDS=$(SEEDS) SIM_FIRST=$(FIRST) $(if $(SEED),SIM_SEED=$(SEED)) \
	  $(CARGO) test --test simulation every_seeded -- --nocapture
	$(if $(SEED),,SIM_CALM_CHANGES=$(CALM_CHANGES) SIM_CALM_SEEDS=$(CALM_SEEDS) \
	  $(CARGO) test --test simulation calm_fleets -- --nocapture)

sam-local: venv
	scripts/sam-local

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-venv:
	rm -rf $(VENV)

# `make bench` lives below.

.PHONY: bench
bench: venv
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server scripts/bench.sh

