#!/usr/bin/env bash
# Measures connect-identity-sync and writes BENCHMARKS.md (`make bench`).
#
#   scripts/bench.sh            release builds of the function and of the do-nothing
#                               lambda_runtime binary (bench/noop-lambda), the Criterion
#                               bench (benches/pipeline.rs), then bench-driver: start-up,
#                               memory and CPU over 1000 records, throughput against an
#                               emulated quota, update calls for duplicates and no-ops,
#                               users by Username, the staleness guard's cost per record
#                               (off against on), issue 20's fleet (two containers, another
#                               caller, kills), binary size -> BENCHMARKS.md
#   scripts/bench.sh profiles   first builds release-profile variants (opt-level s/z/3,
#                               CPU jitter entropy on/off, non-PIE), each in its own target dir
#                               under <target dir>/bench-profiles, and records their start-up
#                               and size in bench/results/profiles.jsonl (slow: one full
#                               LTO build per variant); then as above
#
# Needs moto_server (MOTO_SERVER, .venv/bin or PATH; `make venv`). Not part of
# `make test` or CI: it takes minutes and wants a quiet machine.
#
# Environment: BENCH_RUNS (start-up runs per binary, default 20), BENCH_RECORDS (1000),
# BENCH_QUOTA_CHANGES (400), BENCH_GUARD_RECORDS (records of the staleness guard run,
# default BENCH_RECORDS), BENCH_VARIANTS (for `profiles`: opt-level, then
# -jitter for jitter entropy on, -static for non-PIE; default "s-jitter s z 3 z-static"),
# BENCH_FLEET_USERS (150), BENCH_FLEET_CHANGES (changes per user, 4), BENCH_FLEET_SCALE (4:
# quotas four times Connect's, timeouts and recovery a fourth; 1 is Connect's own pace),
# BENCH_FLEET_CONTAINERS (2,5,10),
# BENCH_BACKLOG_USERS (1112), BENCH_BACKLOG_SCALE (5), BENCH_BACKLOG_CONTAINERS (5) for the
# backlog of 10,000 changes, BENCH_ARM64=1 (also build the arm64 Lambda bootstrap with cargo-lambda from .venv; the
# report shows the size of whichever bootstrap it finds).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The release build's setting for aws-lc-sys (see BENCHMARKS.md and .cargo/config.toml):
# no CPU jitter entropy; the OS (getrandom) and RDRAND seed the DRBG.
export AWS_LC_SYS_NO_JITTER_ENTROPY="${AWS_LC_SYS_NO_JITTER_ENTROPY-1}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

runs="${BENCH_RUNS:-20}"
records="${BENCH_RECORDS:-1000}"
quota_changes="${BENCH_QUOTA_CHANGES:-400}"
guard_records="${BENCH_GUARD_RECORDS:-$records}"
# Cargo's target directory as cargo resolves it (target/, CARGO_TARGET_DIR or a cargo
# config's build.target-dir); exported so that the driver finds the bootstraps there.
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export CARGO_TARGET_DIR=$target_dir
driver=$target_dir/debug/bench-driver

step() { printf '\n== bench: %s\n' "$*" >&2; }

step "bench driver"
cargo build --locked -p bench-driver

if [[ "${1:-}" == "profiles" ]]; then
    functions=() noops=() labels=() levels=() jitters=()
    host="$(rustc -vV | sed -n 's/^host: //p')"
    for variant in ${BENCH_VARIANTS:-s-jitter s z 3 z-static}; do
        opt="${variant%%-*}"
        if [[ "$variant" == *-jitter* ]]; then jitter=on; nje=0; else jitter=off; nje=1; fi
        dir="$target_dir/bench-profiles/$variant"
        flags=() rustflags="${RUSTFLAGS:-}" out="$dir/release" label="opt-level $opt / jitter $jitter"
        if [[ "$variant" == *-static* ]]; then
            # Non-PIE; with --target so build scripts and proc macros stay PIE.
            flags=(--target "$host") rustflags="-C relocation-model=static" out="$dir/$host/release"
            label="$label / non-PIE"
        fi
        step "variant $label ($dir)"
        for package in connect-identity-sync noop-lambda; do
            AWS_LC_SYS_NO_JITTER_ENTROPY=$nje CARGO_PROFILE_RELEASE_OPT_LEVEL="$opt" RUSTFLAGS="$rustflags" \
                cargo build --release --locked --target-dir "$dir" "${flags[@]}" -p "$package"
        done
        functions+=("$out/connect-identity-sync") noops+=("$out/noop-lambda")
        labels+=("$label") levels+=("$opt") jitters+=("$jitter")
    done
    join() { local IFS=,; echo "$*"; }
    step "start-up of the variants, interleaved"
    results=bench/results/profiles.jsonl
    : > "$results.new"
    "$driver" startup --runs "$runs" --append "$results.new" \
        --function "$(join "${functions[@]}")" --noop "$(join "${noops[@]}")" \
        --label "$(join "${labels[@]}")" --opt-level "$(join "${levels[@]}")" \
        --jitter-entropy "$(join "${jitters[@]}")"
    mv "$results.new" "$results"
fi

if [[ "${BENCH_ARM64:-0}" == 1 ]]; then
    step "arm64 Lambda bootstrap (cargo lambda build --release --arm64)"
    PATH="$PWD/.venv/bin:$PATH" cargo lambda build --release --arm64 --bin connect-identity-sync
fi

step "Criterion: parse -> validate -> merge (benches/pipeline.rs)"
# The bench profile inherits release; without LTO, and with the SDK crates (which the
# measured path never reaches) unoptimised, it builds in minutes instead of a second
# full LTO build with the dev-dependencies' features.
cargo bench --locked --bench pipeline \
    --config 'profile.bench.lto=false' --config 'profile.bench.codegen-units=16' \
    --config 'profile.bench.package.aws-sdk-connect.opt-level=0' \
    --config 'profile.bench.package.aws-sdk-sqs.opt-level=0' \
    -- --warm-up-time 1 --measurement-time 3

step "release builds (function and do-nothing binary)"
# After the Criterion step: `cargo bench` also builds the package's binary, with the
# bench profile, into <target dir>/release; this puts the release one back. The driver gets
# copies, so nothing else can swap them under it.
cargo build --release --locked -p connect-identity-sync
cargo build --release --locked -p noop-lambda
mkdir -p "$target_dir/bench"
cp "$target_dir/release/connect-identity-sync" "$target_dir/release/noop-lambda" "$target_dir/bench/"

step "end to end"
"$driver" report --runs "$runs" --records "$records" --quota-changes "$quota_changes" \
    --guard-records "$guard_records" \
    --fleet-users "${BENCH_FLEET_USERS:-150}" --fleet-changes "${BENCH_FLEET_CHANGES:-4}" \
    --fleet-scale "${BENCH_FLEET_SCALE:-4}" --fleet-containers "${BENCH_FLEET_CONTAINERS:-2,5,10}" \
    --function "$target_dir/bench/connect-identity-sync" --noop "$target_dir/bench/noop-lambda" \
    --criterion "$target_dir/criterion" --profiles bench/results/profiles.jsonl --out BENCHMARKS.md

# The fleet under an identity provider's initial cycle: 10,008 changes (1112 users x 9,
# 13,344 messages with the duplicates) queued at once, BENCH_BACKLOG_CONTAINERS (5)
# containers, time scaled by BENCH_BACKLOG_SCALE (5: at 10 an attempt has 300 ms, which
# moto's DynamoDB missed under load); appended to BENCHMARKS.md as 8b.
step "fleet under a backlog of 10,000 changes"
"$driver" fleet --function "$target_dir/bench/connect-identity-sync" \
    --fleet-users "${BENCH_BACKLOG_USERS:-1112}" --fleet-changes 9 \
    --fleet-scale "${BENCH_BACKLOG_SCALE:-5}" --fleet-containers "${BENCH_BACKLOG_CONTAINERS:-5}" \
    --fleet-callers alone --out bench/results/fleet-backlog.md
{ echo; sed '1s/^## 8\..*/## 8b. The fleet under a backlog of 10,000 changes/' bench/results/fleet-backlog.md; } >> BENCHMARKS.md

# The SCIM endpoint (connect-identity-sync-scim, built with the package above): start-up,
# warm look-ups and an Entra-style cycle of BENCH_SCIM_USERS (1000) users against the
# quota-enforcing emulator, time scaled by BENCH_SCIM_SCALE (10); appended to BENCHMARKS.md.
step "SCIM endpoint"
cp "$target_dir"/release/connect-identity-sync-scim "$target_dir"/bench/
"$driver" scim --runs "$runs" --users "${BENCH_SCIM_USERS:-1000}" --scale "${BENCH_SCIM_SCALE:-10}" \
    --function "$target_dir"/bench/connect-identity-sync --scim "$target_dir"/bench/connect-identity-sync-scim \
    --noop "$target_dir"/bench/noop-lambda --out bench/results/scim.md
{ echo; cat bench/results/scim.md; } >> BENCHMARKS.md
