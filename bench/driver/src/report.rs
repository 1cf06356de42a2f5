//! `BENCHMARKS.md`.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::criterion::Estimate;
use crate::scenarios::{Load, Phase, Quota, Startup, StartupPair};

/// One release-profile variant's start-up and size (`scripts/bench.sh profiles`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileRow {
    pub label: String,
    pub opt_level: String,
    pub jitter_entropy: String,
    pub function_size: u64,
    pub noop_size: u64,
    pub startup: StartupPair,
    pub measured: String,
    pub commit: String,
}

pub fn read_profiles(path: &Path) -> Vec<ProfileRow> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub struct Results<'a> {
    pub function: &'a Path,
    pub noop: &'a Path,
    pub function_size: u64,
    pub noop_size: u64,
    pub startup: &'a StartupPair,
    pub load: &'a Load,
    pub noop_load: &'a Load,
    pub quota: &'a Quota,
    pub quota_default_describe: &'a Quota,
    pub duplicates: &'a [Phase],
    pub usernames: &'a crate::usernames::Usernames,
    pub guard: &'a crate::guard::Guard,
    pub fleet: &'a crate::fleet::Fleet,
    pub estimates: &'a [Estimate],
    pub profiles: &'a [ProfileRow],
    pub profiles_path: &'a Path,
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

pub fn today() -> String {
    output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(|| "?".into())
}

pub fn commit() -> String {
    output("git", &["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "?".into())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn release_profile() -> String {
    let toml = std::fs::read_to_string("Cargo.toml").unwrap_or_default();
    let mut out = String::new();
    let mut inside = false;
    for line in toml.lines() {
        if line.starts_with('[') {
            let header = line.trim();
            inside = header == "[profile.release]" || header.starts_with("[profile.release.");
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    format!("{}\n", out.trim_end())
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

fn time_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1_000_000.0)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1_000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn startup_row(out: &mut String, name: &str, s: &Startup) {
    let _ = writeln!(
        out,
        "| {name} | {:.1} | {:.1} – {:.1} (p90 {:.1}) | {:.1} | {:.1} – {:.1} (p90 {:.1}) | {:.1} | {:.1} |",
        s.to_next_ms.median,
        s.to_next_ms.min,
        s.to_next_ms.max,
        s.to_next_ms.p90,
        s.to_reply_ms.median,
        s.to_reply_ms.min,
        s.to_reply_ms.max,
        s.to_reply_ms.p90,
        s.cpu_to_reply_ms.median,
        s.peak_rss_kib.median / 1024.0,
    );
}

#[allow(clippy::too_many_lines)]
pub fn markdown(r: &Results<'_>) -> String {
    let mut o = String::new();
    let s = r.startup;
    let next_ratio = s.function.to_next_ms.median / s.noop.to_next_ms.median.max(f64::MIN_POSITIVE);
    let reply_ratio =
        s.function.to_reply_ms.median / s.noop.to_reply_ms.median.max(f64::MIN_POSITIVE);
    let peak_mib = r.load.peak_rss_kib as f64 / 1024.0;
    let dup_updates: usize = r
        .duplicates
        .iter()
        .filter(|p| p.must_be_zero)
        .map(|p| p.update_calls)
        .sum();
    let dup_changes: usize = r
        .duplicates
        .iter()
        .filter(|p| p.must_be_zero)
        .map(|p| p.changes)
        .sum();
    let jitter = match std::env::var("AWS_LC_SYS_NO_JITTER_ENTROPY").as_deref() {
        Ok("1") => "off (`AWS_LC_SYS_NO_JITTER_ENTROPY=1`)",
        _ => "on (aws-lc-sys default)",
    };

    let _ = writeln!(o, "# Benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `make bench` (`scripts/bench.sh` → `bench-driver`); every figure below comes from \
         the last run. Do not edit by hand: run `make bench` again.\n"
    );
    let _ = writeln!(
        o,
        "- Measured: {} at commit `{}`\n- Machine: {} cores, {}; Linux {}\n- Toolchain: {}\n- Binaries: `{}`, `{}` (release profile below; CPU jitter entropy {jitter})\n",
        today(),
        commit(),
        std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        cpu_model(),
        std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim(),
        output("rustc", &["-V"]).unwrap_or_default(),
        r.function.display(),
        r.noop.display(),
    );
    let _ = writeln!(o, "```toml\n{}```\n", release_profile());

    let _ = writeln!(o, "## Summary against the targets\n");
    let _ = writeln!(o, "| figure | measured | target | |\n|---|---|---|---|");
    let _ = writeln!(
        o,
        "| start-up to first `GET /next` (median) | {:.1} ms = {next_ratio:.2}× the do-nothing binary ({:.1} ms) | ≤ 2× | {} |",
        s.function.to_next_ms.median,
        s.noop.to_next_ms.median,
        verdict(next_ratio <= 2.0)
    );
    let _ = writeln!(
        o,
        "| start-up to the first reply, one EventBridge change (median) | {:.1} ms ({reply_ratio:.2}× the do-nothing binary's {:.1} ms, which makes no call) | ≤ 8 ms | {} |",
        s.function.to_reply_ms.median,
        s.noop.to_reply_ms.median,
        verdict(s.function.to_reply_ms.median <= 8.0)
    );
    if let Some(tls) = &s.function_tls {
        let ratio = tls.to_reply_ms.median / s.noop.to_reply_ms.median.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            o,
            "| the same, Connect over HTTPS (median) | {:.1} ms = {ratio:.2}× the do-nothing binary | ≤ 8 ms | {} |",
            tls.to_reply_ms.median,
            verdict(tls.to_reply_ms.median <= 8.0)
        );
    }
    if let Some(m) = &s.function_no_mobile {
        let ratio = m.to_reply_ms.median / s.noop.to_reply_ms.median.max(f64::MIN_POSITIVE);
        let _ = writeln!(
            o,
            "| the same, a change without `Mobile` (no phone-number metadata to build; median) | {:.1} ms = {ratio:.2}× the do-nothing binary | ≤ 8 ms | {} |",
            m.to_reply_ms.median,
            verdict(m.to_reply_ms.median <= 8.0)
        );
    }
    let _ = writeln!(
        o,
        "| peak RSS over {} records in batches of {} | {peak_mib:.1} MiB | ≤ 16 MiB | {} |",
        r.load.records,
        r.load.records / r.load.batches.max(1),
        verdict(peak_mib <= 16.0)
    );
    let _ = writeln!(
        o,
        "| CPU time per record (limiters at 1000/s: every call waits for its token) | {:.0} µs ({:.0} µs for the do-nothing binary) | ≤ 130 µs | {} |",
        r.load.cpu_us_per_record(),
        r.noop_load.cpu_us_per_record(),
        verdict(r.load.cpu_us_per_record() <= 130.0)
    );
    let _ = writeln!(
        o,
        "| quota efficiency at 20 updates/s (burst 5) | {:.3} ({:.2} updates/s), {} throttled calls | ≥ 0.95, 0 throttled | {} |",
        r.quota.efficiency(),
        r.quota.rate,
        r.quota.throttled,
        verdict(r.quota.efficiency() >= 0.95 && r.quota.throttled == 0)
    );
    let _ = writeln!(
        o,
        "| update calls for duplicates and no-ops | {dup_updates} for {dup_changes} changes | 0 | {} |",
        verdict(dup_updates == 0)
    );
    let _ = writeln!(
        o,
        "| release binary size, x86_64 (`cargo build --release`) | {:.2} MiB ({} bytes) | ≤ 8 MiB | {} |",
        mib(r.function_size),
        r.function_size,
        verdict(mib(r.function_size) <= 8.0)
    );
    crate::fleet::summary_rows(&mut o, r.fleet);
    for (path, arch, bytes, built) in lambda_bootstraps().iter().take(1) {
        let _ = writeln!(
            o,
            "| Lambda `bootstrap`, {arch} (`{}`, built {built}) | {:.2} MiB ({bytes} bytes) | ≤ 8 MiB | {} |",
            path.display(),
            mib(*bytes),
            verdict(mib(*bytes) <= 8.0)
        );
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 1. Start-up\n");
    let _ = writeln!(
        o,
        "Each run starts a fresh process against a fresh in-process Lambda Runtime API \
         (`harness::runtime_api`) with one invocation already queued, as Lambda does on a cold \
         start. The clock starts just before the process is spawned; *to `GET /next`* stops when \
         the Runtime API hands the invocation out (its counter is polled every 0.1 ms), *to the \
         first reply* when the reply is posted. The invocation is one EventBridge change that \
         needs `DescribeInstance`, `DescribeUser` and `UpdateUserIdentityInfo` on the emulator \
         (loopback, no added latency); the do-nothing binary (`bench/noop-lambda`, same profile) \
         answers `{{}}` to the same event. The binaries alternate, {} runs each after one unrecorded \
         run each. CPU is the process's threads' run time (`/proc/<pid>/task/*/schedstat`) when the \
         reply is in: unlike wall time it hardly moves with what else the machine runs. Peak RSS is \
         `VmHWM` once the reply is in. The function runs without `SSL_CERT_FILE`, as \
         `template.yaml` deploys it: its HTTPS client trusts the compiled-in roots of Amazon \
         Trust Services and reads no CA bundle. In the HTTPS row the Connect endpoint is a TLS \
         front (`scripts/tls-front.py`) before the same emulator, and `SSL_CERT_FILE` names the \
         bench CA alone (one certificate, standing in for the five compiled-in roots), so the \
         first reply also waits for one TLS handshake (the first use of aws-lc's random \
         generator), as against the real Connect endpoint.\n",
        s.function.to_next_ms.runs
    );
    let _ = writeln!(
        o,
        "| binary | to `GET /next`, median ms | range ms | to first reply, median ms | range ms | CPU to first reply, median ms | peak RSS, MiB |\n|---|---|---|---|---|---|---|"
    );
    startup_row(
        &mut o,
        "connect-identity-sync, Connect over HTTP",
        &s.function,
    );
    if let Some(tls) = &s.function_tls {
        startup_row(&mut o, "connect-identity-sync, Connect over HTTPS", tls);
    }
    if let Some(m) = &s.function_no_mobile {
        startup_row(
            &mut o,
            "connect-identity-sync, Connect over HTTP, change without `Mobile`",
            m,
        );
    }
    startup_row(&mut o, "noop-lambda", &s.noop);
    let mut all = vec![
        ("connect-identity-sync", &s.function),
        ("noop-lambda", &s.noop),
    ];
    if let Some(tls) = &s.function_tls {
        all.push(("connect-identity-sync over HTTPS", tls));
    }
    for (name, st) in all {
        if !st.unexpected.is_empty() {
            let _ = writeln!(
                o,
                "\n{name}: {} unexpected replies, e.g. `{}`",
                st.unexpected.len(),
                st.unexpected[0]
            );
        }
    }
    let _ = writeln!(o);

    let _ = writeln!(o, "## 2. Memory and CPU over {} records\n", r.load.records);
    let _ = writeln!(
        o,
        "One process gets a one-change warm-up invocation (so what is built on first use, \
         such as the phone number metadata, is not counted per record), then {} SQS events of {} records each \
         through the Runtime API, one after the other. Every record is a real change to a \
         different user: half bare canonical documents, a quarter EventBridge events inside the \
         SQS body, a quarter SCIM Users (their usernames resolved from the `ListUsers` index); most carry a national \
         mobile number. The emulator answers at once and enforces no quota; the function's \
         limiters run at `CONNECT_RPS_*=1000`, the most the configuration accepts, so the load is \
         paced by them: each call waits for its token (1 ms apart per operation), as every call \
         does at Connect's real quotas, and the process sleeps between calls. Peak RSS is `VmHWM` from \
         `/proc/<pid>/status` after the last reply; CPU is user + system time of all threads \
         from `/proc/<pid>/stat` across the batches only (clock-tick resolution). The \
         do-nothing binary gets the same invocations.\n",
        r.load.batches,
        r.load.records / r.load.batches.max(1)
    );
    let _ = writeln!(
        o,
        "| binary | peak RSS | RSS at the end (anonymous + file-backed) | start-up + warm-up CPU | CPU for the batches | CPU per record | wall time |\n|---|---|---|---|---|---|---|"
    );
    for (name, l) in [
        ("connect-identity-sync", r.load),
        ("noop-lambda", r.noop_load),
    ] {
        let _ = writeln!(
            o,
            "| {name} | {:.1} MiB | {:.1} MiB ({:.1} + {:.1}) | {:.0} ms | {:.0} ms | {:.0} µs | {:.0} ms |",
            l.peak_rss_kib as f64 / 1024.0,
            l.rss_end_kib as f64 / 1024.0,
            l.anon_end_kib as f64 / 1024.0,
            l.file_end_kib as f64 / 1024.0,
            l.warm_up_cpu_ms,
            l.cpu_ms,
            l.cpu_us_per_record(),
            l.wall_ms
        );
    }
    let _ = writeln!(
        o,
        "\nConnect calls for the batches: {} `UpdateUserIdentityInfo`, {} `DescribeUser`, {} `SearchUsers`, {} `ListUsers`; \
         {} records handed back; dead letters: {}.{}\n",
        r.load.updates,
        r.load.describe_user_calls,
        r.load.search_users_calls,
        r.load.list_users_calls,
        r.load.handed_back,
        dead(&r.load.dead_letters),
        problems(&r.load.problems)
    );

    let _ = writeln!(o, "## 3. Throughput against Connect's quota\n");
    let _ = writeln!(
        o,
        "The emulator enforces a token bucket on `UpdateUserIdentityInfo` (it starts full); the \
         function runs with `CONNECT_RPS_UPDATE=20`. Changes to distinct users go in SQS events of \
         10, one invocation after another. The rate is (accepted updates − 1) ÷ the time from the \
         first to the last accepted update in the emulator journal (ms resolution); efficiency is \
         that rate ÷ the quota. Throttled calls are journal entries answered \
         `ThrottlingException`, any operation.\n"
    );
    let _ = writeln!(
        o,
        "| quota | `CONNECT_RPS_UPDATE` | `CONNECT_RPS_DESCRIBE` | changes | accepted updates | updates/s | efficiency | throttled (updates) | wall time, first invoke → last reply | handed back | dead letters |\n|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for q in [r.quota, r.quota_default_describe] {
        let _ = writeln!(
            o,
            "| {} /s, burst {} | {} | {} | {} | {} | {:.2} | {:.3} | {} ({}) | {:.1} s | {} | {} |",
            q.quota_rps,
            q.quota_burst,
            q.rps_update,
            q.rps_describe,
            q.changes,
            q.updates,
            q.rate,
            q.efficiency(),
            q.throttled,
            q.throttled_updates,
            q.wall_s,
            q.handed_back,
            dead(&q.dead_letters)
        );
    }
    let _ = writeln!(
        o,
        "\nEvery change needs one `DescribeUser` before its update, so the per-container \
         `DescribeUser` limit must be at least the update limit for the update quota to be the \
         binding one. Connect's default quotas (2 updates/s, 10 `DescribeUser`/s) keep that \
         ratio; the first row scales both by 10, the second leaves `CONNECT_RPS_DESCRIBE` at its \
         default of 10/s to show what happens when it is the tighter limit.\n"
    );

    let _ = writeln!(o, "## 4. Update calls for duplicates and no-ops\n");
    let _ = writeln!(
        o,
        "One process, the emulator without quota; the phases run in this order and each is \
         counted from the emulator journal on its own.\n"
    );
    let _ = writeln!(
        o,
        "| phase | changes | `UpdateUserIdentityInfo` calls | per change | `DescribeUser` calls | `SearchUsers` calls | |\n|---|---|---|---|---|---|---|"
    );
    for p in r.duplicates {
        let check = if p.must_be_zero {
            verdict(p.update_calls == 0)
        } else {
            "reference"
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} | {:.2} | {} | {} | {check}{} |",
            p.name,
            p.changes,
            p.update_calls,
            p.updates_per_change(),
            p.describe_user_calls,
            p.search_users_calls,
            problems(&p.problems)
        );
    }
    let _ = writeln!(o);

    usernames_section(&mut o, r.usernames);
    crate::guard::section(&mut o, r.guard);

    let _ = writeln!(o, "## 5. Binary size\n");
    let _ = writeln!(
        o,
        "| binary | bytes | MiB | gzip -9 |\n|---|---|---|---|\n| connect-identity-sync | {} | {:.2} | {} |\n| noop-lambda | {} | {:.2} | {} |\n",
        r.function_size,
        mib(r.function_size),
        gzip_size(r.function),
        r.noop_size,
        mib(r.noop_size),
        gzip_size(r.noop)
    );

    let arm64 = lambda_bootstraps();
    if arm64.is_empty() {
        let _ = writeln!(
            o,
            "No Lambda `bootstrap` found (`BENCH_ARM64=1 make bench` builds the arm64 one with \
             `cargo lambda build --release --arm64`; `sam build` makes one too).\n"
        );
    } else {
        let _ = writeln!(
            o,
            "The deployed artifact is the arm64 `bootstrap` (`template.yaml`: `Architectures: [arm64]`), \
             built by `cargo lambda build --release --arm64` with the same profile:\n\n\
             | bootstrap | architecture | bytes | MiB | gzip -9 | built |\n|---|---|---|---|---|---|"
        );
        for (path, arch, bytes, built) in &arm64 {
            let _ = writeln!(
                o,
                "| `{}` | {arch} | {bytes} | {:.2} | {} | {built} |",
                path.display(),
                mib(*bytes),
                gzip_size(path)
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "## 6. Parse → validate → merge per record (Criterion)\n");
    if r.estimates.is_empty() {
        let _ = writeln!(
            o,
            "No Criterion results found: run `cargo bench --bench pipeline` (part of `make bench`).\n"
        );
    } else {
        let _ = writeln!(
            o,
            "`benches/pipeline.rs`, in the bench profile as `make bench` builds it (the release \
             settings without LTO and with 16 codegen units, so a little slower than the \
             release binary). `inbound::read_invocation` → \
             `Admission::admit` → `IdentityChange::apply_to`, from the invocation's bytes to the \
             merged identity; median with its 95 % confidence interval.\n"
        );
        let _ = writeln!(
            o,
            "| benchmark | median per iteration | 95 % CI | per record |\n|---|---|---|---|"
        );
        for e in r.estimates {
            let _ = writeln!(
                o,
                "| `{}` | {} | {} – {} | {} |",
                e.id,
                time_ns(e.median_ns),
                time_ns(e.ci_ns.0),
                time_ns(e.ci_ns.1),
                time_ns(e.per_element_ns())
            );
        }
        let _ = writeln!(o);
    }

    let _ = writeln!(o, "## 7. Release profile variants\n");
    if r.profiles.is_empty() {
        let _ = writeln!(
            o,
            "No variants measured yet: `scripts/bench.sh profiles` builds them and records them in `{}`.\n",
            r.profiles_path.display()
        );
    } else {
        let _ = writeln!(
            o,
            "From `{}`, written by `scripts/bench.sh profiles` (slow: one full LTO build per \
             variant, each in its own target directory). Start-up as in section 1, the variants \
             interleaved run by run; each variant's do-nothing binary is built with the same \
             settings.\n",
            r.profiles_path.display()
        );
        let _ = writeln!(
            o,
            "| variant | opt-level | jitter entropy | function size | to `GET /next` | to first reply (CPU) | to first reply over HTTPS (CPU) | peak RSS | do-nothing: size, to `GET /next`, to reply | measured |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for p in r.profiles {
            let f = &p.startup.function;
            let n = &p.startup.noop;
            let _ = writeln!(
                o,
                "| {} | {} | {} | {:.2} MiB | {:.1} ms | {:.1} ms ({:.1} ms) | {} | {:.1} MiB | {:.2} MiB, {:.1} ms, {:.1} ms | {} (`{}`) |",
                p.label,
                p.opt_level,
                p.jitter_entropy,
                mib(p.function_size),
                f.to_next_ms.median,
                f.to_reply_ms.median,
                f.cpu_to_reply_ms.median,
                p.startup.function_tls.as_ref().map_or_else(
                    || "—".to_owned(),
                    |t| format!(
                        "{:.1} ms ({:.1} ms)",
                        t.to_reply_ms.median, t.cpu_to_reply_ms.median
                    )
                ),
                f.peak_rss_kib.median / 1024.0,
                mib(p.noop_size),
                n.to_next_ms.median,
                n.to_reply_ms.median,
                p.measured,
                p.commit
            );
        }
        let _ = writeln!(o);
    }
    crate::fleet::section(&mut o, r.fleet);
    if let Ok(notes) = std::fs::read_to_string(NOTES) {
        let _ = writeln!(o, "{}", notes.trim_end());
    }
    o
}

/// Hand-written choices and findings, appended as they are (their figures come from
/// the tables above and from `bench/results/`).
const NOTES: &str = "bench/notes.md";

/// Lambda `bootstrap`s left by `cargo lambda build` or `sam build`: path, ELF
/// architecture, size, modification time.
fn lambda_bootstraps() -> Vec<(std::path::PathBuf, &'static str, u64, String)> {
    // scripts/bench.sh exports cargo's target directory as CARGO_TARGET_DIR.
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::PathBuf::from("target"),
        std::path::PathBuf::from,
    );
    let mut candidates = vec![
        target.join("lambda/connect-identity-sync/bootstrap"),
        // Where .ci/lint-template's `sam build` writes (its --build-dir, in the work tree).
        std::path::PathBuf::from("target/sam/build/ConnectIdentitySyncFunction/bootstrap"),
    ];
    if let Ok(dir) = std::env::var("SAM_CARGO_TARGET_DIR") {
        candidates.push(Path::new(&dir).join("lambda/connect-identity-sync/bootstrap"));
    }
    candidates
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            let arch = match bytes.get(18..20)? {
                [0x3e, 0] => "x86_64",
                [0xb7, 0] => "aarch64",
                _ => "?",
            };
            let built = output("date", &["-u", "-r", path.to_str()?, "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_default();
            Some((path, arch, bytes.len() as u64, built))
        })
        .collect()
}

fn dead(classes: &[String]) -> String {
    if classes.is_empty() {
        "none".into()
    } else {
        format!("{} ({})", classes.len(), classes.join(", "))
    }
}

fn problems(list: &[String]) -> String {
    if list.is_empty() {
        String::new()
    } else {
        format!(" Problems: {}", list.join("; "))
    }
}

fn gzip_size(path: &Path) -> String {
    let Some(path) = path.to_str() else {
        return "?".into();
    };
    Command::new("sh")
        .arg("-c")
        .arg("gzip -9 -c \"$1\" | wc -c")
        .arg("sh")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or_else(|| "?".into(), |b| format!("{:.2} MiB", mib(b)))
}

/// Users named by Username: one search each against the username index.
fn usernames_section(o: &mut String, u: &crate::usernames::Usernames) {
    let _ = writeln!(o, "## 4b. Users named by Username at the look-up quota\n");
    let _ = writeln!(
        o,
        "{} changes by `Username` for {} distinct users of a {}-user instance, in SQS batches \
         of 10 (handed-back records sent again), the emulator enforcing {} requests/s (burst {}) \
         on `SearchUsers` and on `ListUsers`; updates and reads not limited. Same run, same \
         binary, two settings.\n",
        u.changes,
        u.changes,
        crate::lab::USERS,
        u.quota_rps,
        u.quota_burst
    );
    let _ = writeln!(
        o,
        "| resolution | `SearchUsers` calls | `ListUsers` calls | look-up calls | throttled | wall time | applied | invocations | dead letters |\n|---|---|---|---|---|---|---|---|---|"
    );
    for r in [&u.today, &u.index] {
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {:.1} s | {} / {} | {} | {} |",
            r.label,
            r.search_calls,
            r.list_calls,
            r.search_calls + r.list_calls,
            r.throttled,
            r.wall_s,
            r.applied,
            u.changes,
            r.invocations,
            r.dead_letters.len()
        );
    }
    let _ = writeln!(
        o,
        "\nIndex of a {}-user instance: {} `ListUsers` pages, {} changes applied from it; the \
         function's peak RSS {:.1} MiB (target < 16 MiB: {}). The index holds 24 bytes a user.\n",
        u.large_users,
        u.large_list_calls,
        u.large_applied,
        u.large_peak_rss_kib as f64 / 1024.0,
        verdict(u.large_peak_rss_kib > 0 && u.large_peak_rss_kib < 16 * 1024)
    );
}
