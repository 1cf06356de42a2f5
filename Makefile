# connect-identity-sync — one-command entry points.
#
#   make demo    build the release binaries, start moto (SQS) and the Connect emulator,
#                send every events/*.json through the real binary, print the outcomes
#                and the dead-letter queues, redrive one fixed dead letter, stop everything
#   make test    every test: unit, property, adapter and end-to-end (needs .venv, made here)
#   make lint    rustfmt check and clippy with warnings as errors
#   make venv    the Python tools the tests and the demo use (.venv with moto[server])
#   make sam-local  every events/*.json through `sam local invoke` of template.yaml (arm64
#                under qemu, in a local provided.al2023 stand-in image), the outcome table
#                checked against events/expected-outcomes.txt, then `sam local start-lambda`
#                with tests/sam; installs and starts what it needs (Docker; runs as root)
#   make bench   measure start-up, memory, CPU, quota use and size; writes BENCHMARKS.md (slow, not in CI)
#
# Needs only a Rust toolchain and Python 3 with pip; everything else is installed here.

CARGO   ?= cargo
PYTHON  ?= python3
VENV    ?= .venv
RELEASE := target/release/connect-identity-sync

# cargo-nextest runs each test in its own process (faster, isolated); plain cargo test
# works too.
NEXTEST := $(shell $(CARGO) nextest --version >/dev/null 2>&1 && echo yes)
ifeq ($(NEXTEST),yes)
TEST_CMD = $(CARGO) nextest run --workspace --no-fail-fast --failure-output final
else
TEST_CMD = $(CARGO) test --workspace --no-fail-fast
endif

.PHONY: all build release demo test e2e lint fmt venv clean-venv help sam-local

all: build

help:
	@sed -n '2,15p' Makefile

build:
	$(CARGO) build --workspace

release: $(RELEASE)

$(RELEASE): FORCE
	$(CARGO) build --release --bin connect-identity-sync --bin connect-identity-sync-redrive

venv:
	@VENV=$(VENV) PYTHON=$(PYTHON) scripts/ensure-venv

demo: venv release
	$(CARGO) run --quiet -p harness --bin demo -- --function $(RELEASE) --seed demo/contact-centre.json --events events

test: venv
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(TEST_CMD)

# Only the end-to-end tests of the built binary.
e2e: venv
ifeq ($(NEXTEST),yes)
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(CARGO) nextest run --no-fail-fast -E 'binary(/^e2e_/)'
else
	MOTO_SERVER=$(abspath $(VENV))/bin/moto_server $(CARGO) test --no-fail-fast --test 'e2e_*'
endif

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

FORCE:
