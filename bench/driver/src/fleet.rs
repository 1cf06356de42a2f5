//! The fleet, measured: two, five and ten containers of the release build on one moto queue
//! through the event source mapping, each with its share of Connect's quota (`CONNECT_RPS_*`
//! = quota/containers, one fleet rate as the template sets it), the quotas emulated
//! account-wide (`UpdateUserIdentityInfo` 2/s, burst 5), the staleness guard on, a backlog
//! queued at once; each with nothing else calling and with another caller at 1.2 updates/s
//! on the same bucket. The scenario is `harness::Scenario`, the one `tests/e2e/fleet.rs`
//! asserts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use harness::{Scenario, ScenarioOutcome};
use serde::Serialize;

/// The other caller's rate, updates/s (issue 20).
pub const OTHER_RATE: f64 = 1.2;

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct FleetRun {
    pub label: String,
    pub containers: usize,
    pub requeued: u64,
    pub receives_per_message: f64,
    pub reads_per_update: f64,
    pub changes: usize,
    pub messages: usize,
    pub kills: usize,
    pub invocations: usize,
    pub deliveries: usize,
    pub handed_back: usize,
    pub drained: bool,
    pub elapsed_s: f64,
    pub updates_applied: u64,
    pub window_s: f64,
    pub free_rate: f64,
    pub quota_use: f64,
    pub calls: u64,
    pub throttled: u64,
    pub throttled_by_operation: BTreeMap<String, (u64, u64)>,
    pub other_calls: u64,
    pub other_throttled: u64,
    pub dead_lettered: usize,
    pub dead_letters_by_class: BTreeMap<String, usize>,
    pub catch_all: usize,
    pub stale_fields: usize,
    pub fields: usize,
    pub source_left: u64,
    /// The fleet's schedule, from the containers' logs.
    pub schedule: Schedule,
    /// Drops of the fleet's update rate (the schedule's epoch at the end).
    pub drops: u64,
    /// The machine's load average (1, 5, 15 min) when the run ended.
    pub load: String,
}

/// What the fleet's update schedule cost, summed from the containers' `fleet rate
/// schedule` lines (each covers a container's last 25 claims; the last few claims of a
/// container are not in any) and `schedule_requests` per invocation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Schedule {
    /// Writes to the schedule (claims, lost races, drops) over the update calls.
    pub writes_per_update: f64,
    /// Claims and writes in the health lines.
    pub claims: u64,
    pub writes: u64,
    /// Mean time of a write, of a request's wait for its turn, and of a turn's lateness
    /// after its instant, ms.
    pub write_ms: f64,
    pub wait_ms: f64,
    pub late_ms: f64,
    /// Requests paced on a container's own limiter because the schedule could not be
    /// used (the table failed or was too slow, or races were lost too often).
    pub fallbacks: u64,
    /// Warnings that the table did not answer or failed.
    pub table_failures: usize,
}

impl Schedule {
    fn from(o: &ScenarioOutcome) -> Self {
        let logs = o.fleet.logs();
        let mut s = Schedule::default();
        let (mut write_ms, mut wait_ms, mut late_ms) = (0.0, 0.0, 0.0);
        for line in logs.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let f = &v["fields"];
            match f["message"].as_str() {
                Some("fleet rate schedule") => {
                    let claims = f["claims"].as_u64().unwrap_or(0);
                    let writes = f["writes"].as_u64().unwrap_or(0);
                    s.claims += claims;
                    s.writes += writes;
                    write_ms += f["write_ms"].as_f64().unwrap_or(0.0) * writes as f64;
                    wait_ms += f["wait_ms"].as_f64().unwrap_or(0.0) * claims as f64;
                    late_ms += f["late_ms"].as_f64().unwrap_or(0.0) * claims as f64;
                    s.fallbacks += f["fallbacks"].as_u64().unwrap_or(0);
                }
                Some(m) if m.starts_with("the fleet's rate could not be") => {
                    s.table_failures += 1;
                }
                _ => {}
            }
        }
        s.write_ms = write_ms / s.writes.max(1) as f64;
        s.wait_ms = wait_ms / s.claims.max(1) as f64;
        s.late_ms = late_ms / s.claims.max(1) as f64;
        let updates = o
            .function_calls
            .get("UpdateUserIdentityInfo")
            .map_or(0, |c| c.calls);
        s.writes_per_update = o.schedule_writes() as f64 / updates.max(1) as f64;
        s
    }
}

/// The load average now, as `/proc/loadavg` gives it (1, 5 and 15 minutes).
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_else(|| "unknown".to_owned())
}

impl FleetRun {
    fn from(label: &str, containers: usize, o: &ScenarioOutcome) -> Self {
        let total = o.function_total();
        Self {
            label: label.to_owned(),
            containers,
            requeued: o.requeued(),
            receives_per_message: o.receives_per_message(),
            reads_per_update: o.reads_per_update(),
            changes: o.changes,
            messages: o.messages,
            kills: o.fleet.kills(),
            invocations: o.fleet.batches().count(),
            deliveries: o.fleet.deliveries(),
            handed_back: o.fleet.handed_back(),
            drained: o.fleet.drained,
            elapsed_s: o.fleet.elapsed.as_secs_f64(),
            updates_applied: o.updates_applied,
            window_s: o.update_window.as_secs_f64(),
            free_rate: o.free_rate(),
            quota_use: o.quota_use(),
            calls: total.calls,
            throttled: total.throttled,
            throttled_by_operation: o
                .function_calls
                .iter()
                .map(|(op, c)| (op.clone(), (c.throttled, c.calls)))
                .collect(),
            other_calls: o.other_calls.calls,
            other_throttled: o.other_calls.throttled,
            dead_lettered: o.dead_lettered(),
            dead_letters_by_class: o
                .dead_letters
                .iter()
                .map(|(c, m)| (c.clone(), m.len()))
                .collect(),
            catch_all: o.catch_all.len(),
            stale_fields: o.stale_fields.len(),
            fields: o.fields,
            source_left: o.source_depth,
            schedule: Schedule::from(o),
            drops: o.schedule_drops.unwrap_or(0),
            load: load_average(),
        }
    }

    pub fn throttled_share(&self) -> f64 {
        share(self.throttled, self.calls)
    }

    pub fn other_share(&self) -> f64 {
        share(self.other_throttled, self.other_calls)
    }

    fn has_other(&self) -> bool {
        self.other_calls > 0
    }

    /// The quota-use target: 0.95 of 2/s alone, 0.9 of what is free under contention.
    pub fn quota_target(&self) -> f64 {
        if self.has_other() { 0.9 } else { 0.95 }
    }
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The three runs.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    pub users: usize,
    pub changes_per_user: usize,
    pub scale: f64,
    pub function_timeout_s: f64,
    pub visibility_timeout_s: u32,
    /// `CONNECT_RECOVERY_MS` (the limiters' climb back after a throttle), seconds.
    pub recovery_s: f64,
    pub build: String,
    pub runs: Vec<FleetRun>,
}

impl Fleet {
    /// Every target of issue 20 met, run by run.
    pub fn targets(&self) -> Vec<(String, bool)> {
        let mut out = Vec::new();
        for r in &self.runs {
            if r.kills == 0 {
                out.push((
                    format!("{}: quota use ≥ {}", r.label, r.quota_target()),
                    r.quota_use >= r.quota_target(),
                ));
            }
            out.push((
                format!("{}: throttled ≤ 2 % of calls", r.label),
                r.throttled_share() <= 0.02,
            ));
            if r.has_other() {
                out.push((
                    format!("{}: the other caller throttled ≤ 2 %", r.label),
                    r.other_share() <= 0.02,
                ));
            }
            out.push((
                format!("{}: 0 good changes dead-lettered", r.label),
                r.dead_lettered == 0,
            ));
            out.push((
                format!("{}: every field at its newest value", r.label),
                r.stale_fields == 0 && r.source_left == 0,
            ));
        }
        out
    }
}

/// Runs every container count in `containers`, each without and with the other caller, in
/// turn with `function`. Time is scaled by `scale`: quotas and the other caller `scale` times
/// Connect's, the function timeout (30 s), the attempt timeout (3 s) and the limiters'
/// recovery after a throttle (`CONNECT_RECOVERY_MS`, 120 s) divided by it, so that each
/// invocation reaches the same share of its batch, and a drop of the rate costs the same
/// share of the run, as at Connect's pace.
pub async fn fleet(
    function: &Path,
    users: usize,
    changes_per_user: usize,
    scale: f64,
    containers: &[usize],
    others: &[bool],
    build: &str,
) -> Result<Fleet, String> {
    let timeout = Duration::from_secs_f64(30.0 / scale);
    let visibility = (timeout.as_secs_f64() * 1.25).ceil() as u32;
    let attempt_ms = (3000.0 / scale).round().max(100.0) as u64;
    let recovery_ms = (120_000.0 / scale).round().max(1000.0) as u64;
    let base = |n: usize| {
        Scenario::new(function, users, changes_per_user)
            .containers(n)
            .scale(scale)
            .timeouts(timeout, visibility)
            .env("CONNECT_ATTEMPT_TIMEOUT_MS", attempt_ms.to_string())
            .env("CONNECT_RECOVERY_MS", recovery_ms.to_string())
            .limit(Duration::from_secs_f64(
                (users * changes_per_user) as f64 / (0.5 * scale) + 600.0 / scale,
            ))
    };
    let mut runs = Vec::new();
    for &n in containers {
        for &other in others {
            let label = if other {
                format!("{n} containers, another caller at 1.2 updates/s")
            } else {
                format!("{n} containers, alone")
            };
            let scenario = if other {
                base(n).other_caller(OTHER_RATE)
            } else {
                base(n)
            };
            eprintln!("bench: fleet, {label}");
            let outcome = scenario.run().await.map_err(|e| e.to_string())?;
            eprintln!("  {}", outcome.summary());
            runs.push(FleetRun::from(&label, n, &outcome));
        }
    }
    Ok(Fleet {
        users,
        changes_per_user,
        scale,
        function_timeout_s: timeout.as_secs_f64(),
        visibility_timeout_s: visibility,
        recovery_s: recovery_ms as f64 / 1000.0,
        build: build.to_owned(),
        runs,
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "**missed**" }
}

/// The summary rows (for the report's summary table).
pub fn summary_rows(o: &mut String, f: &Fleet) {
    for r in &f.runs {
        if r.kills == 0 {
            let _ = writeln!(
                o,
                "| fleet, {}: quota use (updates applied/s over the {:.1}/s free) | {:.2} | ≥ {} | {} |",
                r.label,
                r.free_rate,
                r.quota_use,
                r.quota_target(),
                verdict(r.quota_use >= r.quota_target())
            );
        }
        let _ = writeln!(
            o,
            "| fleet, {}: throttled share of the containers' calls | {:.1} % ({} of {}) | ≤ 2 % | {} |",
            r.label,
            100.0 * r.throttled_share(),
            r.throttled,
            r.calls,
            verdict(r.throttled_share() <= 0.02)
        );
        if r.has_other() {
            let _ = writeln!(
                o,
                "| fleet, {}: the other caller's calls throttled | {:.1} % ({} of {}) | ≤ 2 % | {} |",
                r.label,
                100.0 * r.other_share(),
                r.other_throttled,
                r.other_calls,
                verdict(r.other_share() <= 0.02)
            );
        }
        let _ = writeln!(
            o,
            "| fleet, {}: records in the catch-all; receives a message; `DescribeUser` an update | {}; {:.2}; {:.2} | 0; —; — | {} |",
            r.label,
            r.catch_all,
            r.receives_per_message,
            r.reads_per_update,
            verdict(r.catch_all == 0)
        );
        let _ = writeln!(
            o,
            "| fleet, {}: good changes dead-lettered; fields not at their newest value | {}; {} of {} | 0; 0 | {} |",
            r.label,
            r.dead_lettered,
            r.stale_fields,
            r.fields,
            verdict(r.dead_lettered == 0 && r.stale_fields == 0 && r.source_left == 0)
        );
    }
}

/// The section.
pub fn section(o: &mut String, f: &Fleet) {
    let _ = writeln!(
        o,
        "## 8. The fleet: two, five and ten containers sharing Connect's quota under a backlog\n"
    );
    let _ = writeln!(
        o,
        "Side by side in one run of `bench-driver fleet`: a backlog of {} users × {} changes each \
         ({} changes, `LastName` changed by every one, a third sent twice, shuffled) queued at once \
         on the standard source queue in moto; two, five and ten long-lived containers polling it \
         through the harness's event source mapping (`MaximumConcurrency`), each with \
         `CONNECT_RPS_*` = quota/containers and, as the template sets them, one update rate for \
         all (`CONNECT_FLEET_RPS_UPDATE` = the quota, on a schedule in the staleness guard's \
         table); `MAX_RECEIVE_COUNT` 3 and the source queue's `maxReceiveCount` 6, as the \
         template sets them; Connect's quotas emulated account-wide, one bucket per operation \
         for every caller (`UpdateUserIdentityInfo` {:.1}/s burst 5, `DescribeUser` {:.0}/s \
         burst 15); the staleness guard on (moto DynamoDB). The other caller is the real SDK, \
         signed with its own key, calling `UpdateUserIdentityInfo` at {:.2}/s on two users of \
         its own, each call one attempt. Function timeout {:.1} s, attempt timeout scaled with \
         it, visibility timeout {} s. {} \
         Quota use is updates applied per second, from the containers' first answered call to \
         their last applied update, over the rate the other caller leaves free; receives a \
         message counts every delivery (of the messages sent and of the copies the containers \
         queued again) over the messages sent; `DescribeUser` an update counts every read over \
         the updates applied (a duplicate message is a change of its own id, so it is read once \
         and ends `unchanged`). The function build: {}.\n",
        f.users,
        f.changes_per_user,
        f.users * f.changes_per_user,
        2.0 * f.scale,
        10.0 * f.scale,
        OTHER_RATE * f.scale,
        f.function_timeout_s,
        f.visibility_timeout_s,
        if (f.scale - 1.0).abs() < 1e-9 {
            "Connect's own pace (no time scaling).".to_owned()
        } else {
            format!(
                "Time scaled ×{}: every quota and the other caller's rate are {} times \
                 Connect's, the function's timeouts and the limiters' recovery after a \
                 throttle (`CONNECT_RECOVERY_MS`, {:.0} s) a {}th of the template's.",
                f.scale, f.scale, f.recovery_s, f.scale
            )
        },
        f.build
    );
    let mut header = "| | ".to_owned();
    let mut rule = "|---|".to_owned();
    for r in &f.runs {
        let _ = write!(header, "{} | ", r.label);
        rule.push_str("---|");
    }
    let _ = writeln!(o, "{}\n{rule}", header.trim_end());
    let row = |o: &mut String, name: &str, cell: &dyn Fn(&FleetRun) -> String| {
        let cells: Vec<String> = f.runs.iter().map(cell).collect();
        let _ = writeln!(o, "| {name} | {} |", cells.join(" | "));
    };
    row(o, "updates applied / window", &|r| {
        format!("{} in {:.1} s", r.updates_applied, r.window_s)
    });
    row(o, "quota use (of the free rate)", &|r| {
        format!(
            "{:.2} of {:.1}/s (target ≥ {}: {}){}",
            r.quota_use,
            r.free_rate,
            r.quota_target(),
            verdict(r.quota_use >= r.quota_target()),
            if r.has_other() && r.quota_use > 1.02 {
                "; above 1: part of the other caller's share"
            } else {
                ""
            }
        )
    });
    row(o, "containers' calls throttled", &|r| {
        format!(
            "{:.1} % ({} of {}) ({})",
            100.0 * r.throttled_share(),
            r.throttled,
            r.calls,
            verdict(r.throttled_share() <= 0.02)
        )
    });
    row(o, "… by operation (throttled/calls)", &|r| {
        r.throttled_by_operation
            .iter()
            .map(|(op, (t, c))| format!("{op} {t}/{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    row(o, "the other caller throttled", &|r| {
        if r.has_other() {
            format!(
                "{:.1} % ({} of {}) ({})",
                100.0 * r.other_share(),
                r.other_throttled,
                r.other_calls,
                verdict(r.other_share() <= 0.02)
            )
        } else {
            "—".to_owned()
        }
    });
    row(o, "good changes dead-lettered", &|r| {
        let classes: Vec<String> = r
            .dead_letters_by_class
            .iter()
            .map(|(c, n)| format!("{n} {c}"))
            .collect();
        format!(
            "{}{}{} ({})",
            r.dead_lettered,
            if classes.is_empty() {
                String::new()
            } else {
                format!(": {}", classes.join(", "))
            },
            if r.catch_all > 0 {
                format!(", {} in the catch-all", r.catch_all)
            } else {
                String::new()
            },
            verdict(r.dead_lettered == 0)
        )
    });
    row(o, "fields not at their newest value", &|r| {
        format!(
            "{} of {} ({})",
            r.stale_fields,
            r.fields,
            verdict(r.stale_fields == 0 && r.source_left == 0)
        )
    });
    row(o, "records in the source queue's catch-all", &|r| {
        format!("{} ({})", r.catch_all, verdict(r.catch_all == 0))
    });
    row(o, "receives a message", &|r| {
        format!("{:.2}", r.receives_per_message)
    });
    row(o, "`DescribeUser` an update", &|r| {
        format!("{:.2}", r.reads_per_update)
    });
    row(
        o,
        "invocations; deliveries; handed back; queued again",
        &|r| {
            format!(
                "{}; {} for {} messages; {} ({:.0} %); {}",
                r.invocations,
                r.deliveries,
                r.messages,
                r.handed_back,
                100.0 * share(r.handed_back as u64, r.deliveries as u64),
                r.requeued
            )
        },
    );
    row(
        o,
        "schedule: writes an update; a write's time; a turn's wait; late after its instant",
        &|r| {
            let s = &r.schedule;
            format!(
                "{:.2}; {:.0} ms; {:.0} ms; {:.1} ms",
                s.writes_per_update, s.write_ms, s.wait_ms, s.late_ms
            )
        },
    );
    row(
        o,
        "schedule: requests paced on a container's own limiter; table failures",
        &|r| format!("{}; {}", r.schedule.fallbacks, r.schedule.table_failures),
    );
    row(o, "drops of the fleet's rate", &|r| r.drops.to_string());
    row(o, "load average at the end (1, 5, 15 min)", &|r| {
        r.load.clone()
    });
    row(o, "queue drained in", &|r| {
        format!(
            "{:.1} s{}",
            r.elapsed_s,
            if r.drained { "" } else { " (not drained)" }
        )
    });
    let _ = writeln!(o);
}
