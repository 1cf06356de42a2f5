//! `bench-driver`: runs `connect-identity-sync` (a release build) against the Connect
//! emulator and moto through an in-process Lambda Runtime API, and writes what it
//! measured to `BENCHMARKS.md`. `scripts/bench.sh` builds everything and calls it;
//! `make bench` calls that.
//!
//! ```text
//! bench-driver report  --function BIN --noop BIN [--out BENCHMARKS.md] [--runs 20]
//!                      [--records 1000] [--batch 10] [--quota-changes 400]
//!                      [--criterion target/criterion] [--profiles bench/results/profiles.jsonl]
//! bench-driver startup --function BIN[,BIN…] --noop BIN[,BIN…] --append FILE
//!                      [--label TEXT,…] [--runs 20] [--opt-level L,…] [--jitter-entropy on|off,…]
//! bench-driver load    --function BIN [--records 1000] [--batch 10]
//! bench-driver usernames --function BIN [--changes 200] [--large-users 50000]
//! bench-driver guard   --function BIN [--records 1000] [--batch 10]
//! bench-driver fleet   --function BIN [--fleet-users 150] [--fleet-changes 4] [--fleet-scale 4] [--fleet-containers 2,5,10] [--fleet-callers alone,other]
//!                      [--out FILE (the section alone, as markdown)]
//! bench-driver scim    --function BIN --scim BIN --noop BIN [--runs 20] [--users 1000]
//!                      [--lookups 1000] [--scale 10] [--out FILE (the section, as markdown)]
//! ```

mod criterion;
mod fleet;
mod guard;
mod lab;
mod procfs;
mod report;
mod scenarios;
mod scim;
mod stats;
mod usernames;

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use lab::Lab;

fn usage() -> ! {
    eprintln!(
        "usage:\n  bench-driver report --function BIN --noop BIN [--out FILE] [--runs N] [--records N] \
         [--batch N] [--quota-changes N] [--criterion DIR] [--profiles FILE]\n  \
         bench-driver startup --function BIN[,BIN...] --noop BIN[,BIN...] --append FILE \
         [--label TEXT,...] [--runs N] [--opt-level L,...] [--jitter-entropy on|off,...]\n  \
         bench-driver load --function BIN [--records N] [--batch N]\n  \
         bench-driver usernames --function BIN [--changes N] [--large-users N]\n  \
         bench-driver guard --function BIN [--records N] [--batch N]\n  \
         bench-driver fleet --function BIN [--fleet-users N] [--fleet-changes N] [--fleet-scale X] [--fleet-containers N,N] [--fleet-callers alone,other] [--out FILE]\n  \
         bench-driver scim --function BIN --scim BIN --noop BIN [--runs N] [--users N] [--lookups N] [--scale X] [--out FILE]"
    );
    std::process::exit(2)
}

struct Args {
    command: String,
    options: HashMap<String, String>,
}

impl Args {
    fn parse() -> Self {
        let mut raw = std::env::args().skip(1);
        let Some(command) = raw.next() else { usage() };
        let mut options = HashMap::new();
        while let Some(key) = raw.next() {
            let Some(name) = key.strip_prefix("--") else {
                usage()
            };
            let Some(value) = raw.next() else { usage() };
            options.insert(name.to_owned(), value);
        }
        Self { command, options }
    }

    fn path(&self, key: &str) -> PathBuf {
        match self.options.get(key) {
            Some(v) => PathBuf::from(v),
            None => {
                eprintln!("--{key} is required");
                usage()
            }
        }
    }

    fn text(&self, key: &str, default: &str) -> String {
        self.options
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_owned())
    }

    fn number(&self, key: &str, default: usize) -> usize {
        match self.options.get(key) {
            Some(v) => v.parse().unwrap_or_else(|_| usage()),
            None => default,
        }
    }
}

/// The TLS front for the HTTPS start-up figures; without openssl or python3 those are
/// left out.
fn tls_front(lab: &Lab) -> Option<lab::TlsFront> {
    match lab::TlsFront::start(&lab.connect_endpoint()) {
        Ok(front) => Some(front),
        Err(e) => {
            eprintln!("bench: no HTTPS start-up figures: {e}");
            None
        }
    }
}

fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let result = match args.command.as_str() {
        "report" => run_report(&args).await,
        "startup" => run_startup(&args).await,
        "load" => run_load(&args).await,
        "usernames" => run_usernames(&args).await,
        "guard" => run_guard(&args).await,
        "fleet" => run_fleet(&args).await,
        "scim" => run_scim(&args).await,
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("bench-driver: {e}");
        std::process::exit(1);
    }
}

async fn run_scim(args: &Args) -> Result<(), String> {
    let options = scim::Options {
        function: args.path("function"),
        scim: args.path("scim"),
        noop: args.path("noop"),
        runs: args.number("runs", 20),
        users: args.number("users", 1000),
        lookups: args.number("lookups", 1000),
        scale: args
            .text("scale", "10")
            .parse()
            .map_err(|_| "--scale is a number")?,
    };
    let section = scim::run(&options).await?;
    print!("{section}");
    if let Some(out) = args.options.get("out") {
        std::fs::write(out, &section).map_err(|e| format!("{out}: {e}"))?;
    }
    Ok(())
}

async fn run_report(args: &Args) -> Result<(), String> {
    let function = args.path("function");
    let noop = args.path("noop");
    let out = PathBuf::from(args.text("out", "BENCHMARKS.md"));
    let runs = args.number("runs", 20).max(10);
    let records = args.number("records", 1000);
    let batch = args.number("batch", 10);
    let quota_changes = args.number("quota-changes", 400);
    let criterion_dir = PathBuf::from(args.text("criterion", "target/criterion"));
    let profiles = PathBuf::from(args.text("profiles", "bench/results/profiles.jsonl"));

    let lab = Lab::start().await?;
    let tls = tls_front(&lab);
    eprintln!("bench: start-up, {runs} runs of each binary");
    let startup = scenarios::startup(&lab, &function, &noop, runs, tls.as_ref()).await?;
    eprintln!(
        "  function: {:.1} ms to GET /next, {:.1} ms to the first reply; do-nothing: {:.1} ms, {:.1} ms",
        startup.function.to_next_ms.median,
        startup.function.to_reply_ms.median,
        startup.noop.to_next_ms.median,
        startup.noop.to_reply_ms.median
    );
    eprintln!("bench: {records} records in batches of {batch}");
    let load = scenarios::load(&lab, &function, records, batch, true).await?;
    let noop_load = scenarios::load(&lab, &noop, records, batch, false).await?;
    eprintln!(
        "  peak RSS {} KiB, {:.0} µs CPU per record",
        load.peak_rss_kib,
        load.cpu_us_per_record()
    );
    eprintln!("bench: {quota_changes} changes against a quota of 20 updates/s, burst 5");
    let quota =
        scenarios::quota(&lab, &function, quota_changes, 20.0, 5, "20", Some("100")).await?;
    eprintln!(
        "  {:.2} updates/s ({:.3} of the quota), {} throttled",
        quota.rate,
        quota.efficiency(),
        quota.throttled
    );
    let quota_default_describe =
        scenarios::quota(&lab, &function, quota_changes / 2, 20.0, 5, "20", None).await?;
    eprintln!(
        "  with CONNECT_RPS_DESCRIBE at its default: {:.2} updates/s",
        quota_default_describe.rate
    );
    eprintln!("bench: duplicates and no-ops");
    let duplicates = scenarios::duplicates(&lab, &function).await?;
    let username_changes = args.number("username-changes", 200);
    let large_users = args.number("large-users", 50_000);
    eprintln!("bench: {username_changes} changes by Username, SearchUsers and ListUsers at 2/s");
    let usernames = usernames::usernames(&lab, &function, username_changes, large_users).await?;
    print_usernames(&usernames);
    let guard_records = args.number("guard-records", records);
    eprintln!("bench: {guard_records} changes with the staleness guard off and on, in turn");
    let guard = guard::guard(&lab, &function, guard_records, batch).await?;
    print_guard(&guard);

    let fleet = fleet_runs(args, &function).await?;

    let estimates = criterion::estimates(
        &criterion_dir,
        &[
            "parse_validate_merge",
            "read_invocation",
            "admit",
            "apply_to",
        ],
    );
    let profile_rows = report::read_profiles(&profiles);
    let results = report::Results {
        function: &function,
        noop: &noop,
        function_size: file_size(&function),
        noop_size: file_size(&noop),
        startup: &startup,
        load: &load,
        noop_load: &noop_load,
        quota: &quota,
        quota_default_describe: &quota_default_describe,
        duplicates: &duplicates,
        usernames: &usernames,
        guard: &guard,
        fleet: &fleet,
        estimates: &estimates,
        profiles: &profile_rows,
        profiles_path: &profiles,
    };
    let text = report::markdown(&results);
    std::fs::write(&out, text).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

fn print_usernames(u: &usernames::Usernames) {
    for r in [&u.today, &u.index] {
        eprintln!(
            "  {}: {} SearchUsers + {} ListUsers calls ({} throttled), {:.1} s, {} of {} applied, {} invocations",
            r.label,
            r.search_calls,
            r.list_calls,
            r.throttled,
            r.wall_s,
            r.applied,
            u.changes,
            r.invocations
        );
    }
    eprintln!(
        "  index of {} users: peak RSS {} KiB, {} ListUsers calls, {} applied",
        u.large_users, u.large_peak_rss_kib, u.large_list_calls, u.large_applied
    );
}

fn print_guard(g: &guard::Guard) {
    for s in [&g.off, &g.on] {
        eprintln!(
            "  {}: {:.0} µs wall, {:.0} µs CPU per record; {} DynamoDB requests for {} users",
            s.label,
            s.wall_us_per_record(g.records),
            s.cpu_us_per_record(g.records),
            s.watermark_requests,
            s.guarded_users
        );
    }
    let (wall, cpu) = g.difference_us();
    eprintln!("  guard on minus off: {wall:+.0} µs wall, {cpu:+.0} µs CPU per record");
    for p in &g.problems {
        eprintln!("  problem: {p}");
    }
}

/// What the function binary is, for the fleet section: a release build or not. Told by
/// the binary, not its path (a copy elsewhere keeps what it is): the dev profile keeps
/// line tables (`.debug_line`), the release profile strips them.
fn build_label(function: &Path) -> String {
    let shown = function.display().to_string();
    let debug = std::fs::read(function).is_ok_and(|bytes| {
        bytes
            .windows(b".debug_line".len())
            .any(|w| w == b".debug_line")
    });
    if debug || shown.contains("/debug/") {
        format!("**dev build** (`{shown}`, unoptimised: figures of the pacing, not of speed)")
    } else {
        format!("release build (`{shown}`)")
    }
}

/// The fleet's runs (`--fleet-users`, `--fleet-changes`, `--fleet-scale`,
/// `--fleet-containers`).
async fn fleet_runs(args: &Args, function: &Path) -> Result<fleet::Fleet, String> {
    let users = args.number("fleet-users", 150);
    let changes = args.number("fleet-changes", 4);
    let scale: f64 = args
        .text("fleet-scale", "4")
        .parse()
        .unwrap_or_else(|_| usage());
    let containers: Vec<usize> = args
        .text("fleet-containers", "2,5,10")
        .split(',')
        .map(|n| n.trim().parse().unwrap_or_else(|_| usage()))
        .collect();
    // `--fleet-callers alone,other` (the default: both, side by side).
    let others: Vec<bool> = args
        .text("fleet-callers", "alone,other")
        .split(',')
        .map(|c| match c.trim() {
            "alone" => false,
            "other" => true,
            _ => usage(),
        })
        .collect();
    eprintln!(
        "bench: the fleet, {users} users x {changes} changes, {containers:?} containers, quota x{scale}"
    );
    fleet::fleet(
        function,
        users,
        changes,
        scale,
        &containers,
        &others,
        &build_label(function),
    )
    .await
}

/// Only the fleet's runs; `--out FILE` writes their section.
async fn run_fleet(args: &Args) -> Result<(), String> {
    let function = args.path("function");
    let f = fleet_runs(args, &function).await?;
    for (target, met) in f.targets() {
        eprintln!("  {}: {target}", if met { "met" } else { "MISSED" });
    }
    if let Some(out) = args.options.get("out") {
        let mut text = String::new();
        fleet::section(&mut text, &f);
        std::fs::write(out, text).map_err(|e| format!("{out}: {e}"))?;
        // The summary's rows, for the report's summary table.
        let mut rows = String::new();
        fleet::summary_rows(&mut rows, &f);
        let rows_out = format!("{out}.summary");
        std::fs::write(&rows_out, rows).map_err(|e| format!("{rows_out}: {e}"))?;
        eprintln!("bench: wrote {out} and {rows_out}");
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&f).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Only the staleness guard's cost, off against on.
async fn run_guard(args: &Args) -> Result<(), String> {
    let function = args.path("function");
    let lab = Lab::start().await?;
    let g = guard::guard(
        &lab,
        &function,
        args.number("records", 1000),
        args.number("batch", 10),
    )
    .await?;
    print_guard(&g);
    println!(
        "{}",
        serde_json::to_string_pretty(&g).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Only the username-resolution run.
async fn run_usernames(args: &Args) -> Result<(), String> {
    let function = args.path("function");
    let lab = Lab::start().await?;
    let u = usernames::usernames(
        &lab,
        &function,
        args.number("changes", 200),
        args.number("large-users", 50_000),
    )
    .await?;
    print_usernames(&u);
    println!(
        "{}",
        serde_json::to_string_pretty(&u).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Only the memory and CPU run (for profiling the function under load).
async fn run_load(args: &Args) -> Result<(), String> {
    let function = args.path("function");
    let lab = Lab::start().await?;
    let load = scenarios::load(
        &lab,
        &function,
        args.number("records", 1000),
        args.number("batch", 10),
        true,
    )
    .await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&load).map_err(|e| e.to_string())?
    );
    eprintln!("{:.0} µs CPU per record", load.cpu_us_per_record());
    Ok(())
}

async fn run_startup(args: &Args) -> Result<(), String> {
    let list = |key: &str| -> Vec<String> {
        args.text(key, "")
            .split(',')
            .map(str::to_owned)
            .filter(|v| !v.is_empty())
            .collect()
    };
    let functions = list("function");
    let noops = list("noop");
    if functions.is_empty() || functions.len() != noops.len() {
        eprintln!("--function and --noop take the same number of comma-separated paths");
        usage()
    }
    let labels = list("label");
    let opt_levels = list("opt-level");
    let jitter = list("jitter-entropy");
    let append = args.path("append");
    let runs = args.number("runs", 20).max(10);
    let variants: Vec<(PathBuf, PathBuf)> = functions
        .iter()
        .zip(&noops)
        .map(|(f, n)| (PathBuf::from(f), PathBuf::from(n)))
        .collect();
    let lab = Lab::start().await?;
    let tls = tls_front(&lab);
    let pairs = scenarios::startup_variants(&lab, &variants, runs, tls.as_ref()).await?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&append)
        .map_err(|e| format!("{}: {e}", append.display()))?;
    let nth = |v: &[String], i: usize| v.get(i).cloned().unwrap_or_else(|| "?".to_owned());
    for (i, (startup, (function, noop))) in pairs.into_iter().zip(&variants).enumerate() {
        let row = report::ProfileRow {
            label: labels
                .get(i)
                .cloned()
                .unwrap_or_else(|| function.display().to_string()),
            opt_level: nth(&opt_levels, i),
            jitter_entropy: nth(&jitter, i),
            function_size: file_size(function),
            noop_size: file_size(noop),
            startup,
            measured: report::today(),
            commit: report::commit(),
        };
        let f = &row.startup.function;
        eprintln!(
            "{}: {} bytes; GET /next {:.1} ms; first reply {:.1} ms ({:.1} ms CPU){}; do-nothing {:.1} / {:.1} ms",
            row.label,
            row.function_size,
            f.to_next_ms.median,
            f.to_reply_ms.median,
            f.cpu_to_reply_ms.median,
            row.startup
                .function_tls
                .as_ref()
                .map_or_else(String::new, |t| format!(
                    "; over HTTPS {:.1} ms ({:.1} ms CPU)",
                    t.to_reply_ms.median, t.cpu_to_reply_ms.median
                )),
            row.startup.noop.to_next_ms.median,
            row.startup.noop.to_reply_ms.median,
        );
        let line = serde_json::to_string(&row).map_err(|e| e.to_string())?;
        writeln!(file, "{line}").map_err(|e| e.to_string())?;
    }
    Ok(())
}
