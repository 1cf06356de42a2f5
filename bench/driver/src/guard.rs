//! The staleness guard's cost per record: the same changes by user id through two
//! processes of one binary, guard off (no `WATERMARK_TABLE`) and guard on (a watermark
//! table in moto's DynamoDB), batch by batch in turn; wall and CPU time per record, and
//! the DynamoDB requests per user per invocation the guarded process logs.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use connect_emulator::Operation;
use harness::{Function, RuntimeApi};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lab::{
    FUNCTION_TIMEOUT, INSTANCE, Lab, SqsRecord, USERS, batch_item_failures, sqs_event,
};
use crate::procfs;
use crate::stats::Summary;

/// The watermark table of the guarded process.
const TABLE: &str = "bench-watermarks";
/// Access keys telling the two processes' Connect calls apart in the emulator journal.
const KEY_OFF: &str = "AKIABENCHGUARDOFF000";
const KEY_ON: &str = "AKIABENCHGUARDON0000";

/// One process's figures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Side {
    pub label: String,
    /// Sum of the batches' invoke → reply times, ms.
    pub wall_ms: f64,
    /// Invoke → reply per batch, ms.
    pub batch_wall_ms: Summary,
    /// User + system CPU of the process over its batches, ms (clock-tick resolution).
    pub cpu_ms: f64,
    /// `UpdateUserIdentityInfo` calls answered with success.
    pub updates: usize,
    pub handed_back: usize,
    /// From the `staleness guard` log lines of the batches (not the warm-up).
    pub guard_lines: usize,
    pub watermark_requests: u64,
    pub guarded_users: u64,
    pub superseded: u64,
}

impl Side {
    pub fn wall_us_per_record(&self, records: usize) -> f64 {
        self.wall_ms * 1000.0 / records.max(1) as f64
    }

    pub fn cpu_us_per_record(&self, records: usize) -> f64 {
        self.cpu_ms * 1000.0 / records.max(1) as f64
    }

    /// DynamoDB requests per user under a lease, over every invocation.
    pub fn requests_per_user(&self) -> f64 {
        self.watermark_requests as f64 / self.guarded_users.max(1) as f64
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Guard {
    pub records: usize,
    pub batch: usize,
    pub batches: usize,
    pub off: Side,
    pub on: Side,
    pub dead_letters: Vec<String>,
    pub problems: Vec<String>,
}

impl Guard {
    /// Guard on minus guard off, µs per record: (wall, CPU).
    pub fn difference_us(&self) -> (f64, f64) {
        (
            self.on.wall_us_per_record(self.records) - self.off.wall_us_per_record(self.records),
            self.on.cpu_us_per_record(self.records) - self.off.cpu_us_per_record(self.records),
        )
    }
}

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Change `i` of the run for `side`: user `i + 1`'s `LastName`, by user id. Its time is
/// the SQS `SentTimestamp` (now), newer than any watermark of that user.
fn change(i: usize, side: &str) -> SqsRecord {
    SqsRecord::new(
        format!("msg-guard-{side}-{i:05}"),
        &json!({"InstanceId": INSTANCE, "UserId": crate::lab::user_id(i + 1),
                "IdentityInfo": {"LastName": format!("Guard {side} {i}")}}),
    )
}

/// The sums of the `staleness guard` lines (JSON logs) among `lines`:
/// (lines, watermark requests, guarded users, superseded).
pub fn guard_totals(lines: &[String]) -> (usize, u64, u64, u64) {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "staleness guard")
        .fold((0, 0, 0, 0), |(n, req, users, sup), v| {
            let f = &v["fields"];
            let get = |k: &str| f[k].as_u64().unwrap_or(0);
            (
                n + 1,
                req + get("watermark_requests"),
                users + get("guarded_users"),
                sup + get("superseded"),
            )
        })
}

struct Process {
    label: String,
    side: &'static str,
    key: &'static str,
    runtime: RuntimeApi,
    function: Function,
    pid: u32,
    cpu0: Duration,
    logs0: usize,
    wall: Vec<f64>,
    handed_back: usize,
}

async fn start(
    lab: &Lab,
    binary: &Path,
    label: &str,
    side: &'static str,
    key: &'static str,
    table: Option<&str>,
    ticks: u64,
) -> Result<Process, String> {
    let dynamo = lab.sqs_endpoint();
    let mut extra = vec![
        ("CONNECT_RPS_UPDATE", "1000"),
        ("CONNECT_RPS_DESCRIBE", "1000"),
        ("CONNECT_RPS_SEARCH", "1000"),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON"),
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamo.as_str()),
    ];
    if let Some(table) = table {
        extra.push(("WATERMARK_TABLE", table));
    }
    let config = lab.config(binary, &extra);
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = Function::start(
        &config,
        &runtime,
        Some(&lab.connect_endpoint()),
        Some(&lab.sqs_endpoint()),
    )
    .map_err(text)?;
    let pid = function.pid().ok_or("no pid")?;
    // A warm-up change to a user outside the run, so that start-up and what is built
    // on first use are not counted per record.
    let warm_up = SqsRecord::new(
        format!("msg-guard-{side}-warm-up"),
        &json!({"InstanceId": INSTANCE, "UserId": crate::lab::user_id(USERS),
                "IdentityInfo": {"FirstName": format!("Warm {side}")}}),
    );
    let payload = serde_json::to_vec(&sqs_event(&[warm_up])).map_err(text)?;
    let reply = runtime
        .invoke(payload, FUNCTION_TIMEOUT)
        .await
        .map_err(|e| format!("{e}; logs: {}", function.logs()))?;
    match reply {
        harness::Invocation::Response(v) if batch_item_failures(&v) == Some(0) => {}
        other => return Err(format!("{label}: the warm-up was answered {other:?}")),
    }
    let cpu0 = procfs::cpu_time(pid, ticks).ok_or("no /proc stat")?;
    let logs0 = function.log_lines().len();
    Ok(Process {
        label: label.to_owned(),
        side,
        key,
        runtime,
        function,
        pid,
        cpu0,
        logs0,
        wall: Vec::new(),
        handed_back: 0,
    })
}

impl Process {
    async fn run_batch(
        &mut self,
        chunk: &[usize],
        problems: &mut Vec<String>,
    ) -> Result<(), String> {
        let records: Vec<SqsRecord> = chunk.iter().map(|&i| change(i, self.side)).collect();
        let payload = serde_json::to_vec(&sqs_event(&records)).map_err(text)?;
        let t0 = Instant::now();
        let reply = self
            .runtime
            .invoke(payload, FUNCTION_TIMEOUT)
            .await
            .map_err(|e| format!("{e}; logs: {}", self.function.logs()))?;
        self.wall.push(t0.elapsed().as_secs_f64() * 1000.0);
        match reply {
            harness::Invocation::Response(v) => match batch_item_failures(&v) {
                Some(n) => self.handed_back += n,
                None => problems.push(format!("{}: not a batch response: {v}", self.label)),
            },
            other => problems.push(format!("{}: {other:?}", self.label)),
        }
        Ok(())
    }

    async fn finish(mut self, lab: &Lab, ticks: u64) -> Result<Side, String> {
        let cpu1 = procfs::cpu_time(self.pid, ticks).ok_or("no /proc stat")?;
        let lines = self.function.log_lines();
        let (guard_lines, watermark_requests, guarded_users, superseded) =
            guard_totals(&lines[self.logs0.min(lines.len())..]);
        self.function.kill();
        self.function.wait_exit(Duration::from_secs(10)).await;
        let updates = lab
            .calls(Operation::UpdateUserIdentityInfo)
            .iter()
            .filter(|c| c.status == 200 && c.caller.as_deref() == Some(self.key))
            .filter(|c| c.user_id != Some(crate::lab::user_id(USERS)))
            .count();
        Ok(Side {
            label: self.label,
            wall_ms: self.wall.iter().sum(),
            batch_wall_ms: Summary::of(&self.wall),
            cpu_ms: cpu1.saturating_sub(self.cpu0).as_secs_f64() * 1000.0,
            updates,
            handed_back: self.handed_back,
            guard_lines,
            watermark_requests,
            guarded_users,
            superseded,
        })
    }
}

/// `records` changes (users 1…`records`) in SQS batches of `batch`, sent to the
/// guard-off and the guard-on process in turn, batch by batch (which goes first
/// alternating), so that whatever else the machine does weighs on both alike.
pub async fn guard(
    lab: &Lab,
    binary: &Path,
    records: usize,
    batch: usize,
) -> Result<Guard, String> {
    let records = records.min(USERS - 1);
    let batch = batch.max(1);
    lab.reset();
    lab.drain_dead_letters().await?;
    let dynamo = lab.moto.dynamo().await;
    // A fresh table: no watermarks from an earlier run in this moto.
    let _ = dynamo.delete_table(TABLE).await;
    dynamo.create_watermark_table(TABLE).await.map_err(text)?;
    let ticks = procfs::ticks_per_second();
    let mut off = start(
        lab,
        binary,
        "guard off (no `WATERMARK_TABLE`)",
        "off",
        KEY_OFF,
        None,
        ticks,
    )
    .await?;
    let mut on = start(
        lab,
        binary,
        "guard on (`WATERMARK_TABLE` in moto's DynamoDB)",
        "on",
        KEY_ON,
        Some(TABLE),
        ticks,
    )
    .await?;
    let indices: Vec<usize> = (0..records).collect();
    let chunks: Vec<&[usize]> = indices.chunks(batch).collect();
    let mut problems = Vec::new();
    for (k, chunk) in chunks.iter().enumerate() {
        if k % 2 == 0 {
            off.run_batch(chunk, &mut problems).await?;
            on.run_batch(chunk, &mut problems).await?;
        } else {
            on.run_batch(chunk, &mut problems).await?;
            off.run_batch(chunk, &mut problems).await?;
        }
    }
    let off = off.finish(lab, ticks).await?;
    let on = on.finish(lab, ticks).await?;
    for side in [&off, &on] {
        if side.updates != records {
            problems.push(format!(
                "{}: {} updates for {records} changes",
                side.label, side.updates
            ));
        }
        if side.handed_back > 0 {
            problems.push(format!(
                "{}: {} records handed back",
                side.label, side.handed_back
            ));
        }
    }
    if on.guard_lines != chunks.len() {
        problems.push(format!(
            "{} `staleness guard` lines for {} batches",
            on.guard_lines,
            chunks.len()
        ));
    }
    if off.guard_lines != 0 {
        problems.push("the unguarded process logged `staleness guard` lines".to_owned());
    }
    problems.truncate(5);
    let _ = dynamo.delete_table(TABLE).await;
    Ok(Guard {
        records,
        batch,
        batches: chunks.len(),
        off,
        on,
        dead_letters: lab.drain_dead_letters().await?,
        problems,
    })
}

/// Its section of `BENCHMARKS.md`.
pub fn section(o: &mut String, g: &Guard) {
    let _ = writeln!(o, "## 4c. Staleness guard: cost per record\n");
    let _ = writeln!(
        o,
        "{} changes by user id (each a new `LastName`, one per user, timed by its SQS `SentTimestamp`) in \
         {} SQS events of {}, sent to two processes of the same binary in the same run, event \
         by event in turn (which goes first alternating): one without `WATERMARK_TABLE`, one \
         with a watermark table in moto's DynamoDB. The emulator answers at once and enforces \
         no quota; the limiters run at 1000/s, as in section 2. Both processes had one warm-up invocation \
         first. Wall time is the sum of invoke → reply of the events; CPU is user + system time \
         of the process's threads over the events (`/proc/<pid>/stat`, clock-tick resolution). \
         DynamoDB requests come from the function's `staleness guard` log lines \
         (`watermark_requests` ÷ `guarded_users`). moto's DynamoDB is local and written in \
         Python, so the wall difference mostly measures moto answering two `UpdateItem`s per \
         user, not DynamoDB in a region (single-digit milliseconds a request, overlapping \
         across the users of an event); the CPU difference is the function's own cost: \
         signing, sending and parsing those requests.\n",
        g.records, g.batches, g.batch
    );
    let _ = writeln!(
        o,
        "| process | wall per record | event wall, median (p90) | CPU per record | updates | handed back | DynamoDB requests | users under a lease | requests per user per invocation |\n|---|---|---|---|---|---|---|---|---|"
    );
    for s in [&g.off, &g.on] {
        let _ = writeln!(
            o,
            "| {} | {:.0} µs | {:.1} ms ({:.1} ms) | {:.0} µs | {} / {} | {} | {} | {} | {} |",
            s.label,
            s.wall_us_per_record(g.records),
            s.batch_wall_ms.median,
            s.batch_wall_ms.p90,
            s.cpu_us_per_record(g.records),
            s.updates,
            g.records,
            s.handed_back,
            s.watermark_requests,
            s.guarded_users,
            if s.guarded_users > 0 {
                format!("{:.2}", s.requests_per_user())
            } else {
                "—".to_owned()
            }
        );
    }
    let (wall, cpu) = g.difference_us();
    let _ = writeln!(
        o,
        "\nGuard on minus guard off: **{wall:+.0} µs wall** and **{cpu:+.0} µs CPU** per record. \
         Dead letters: {}.{}\n",
        if g.dead_letters.is_empty() {
            "none".to_owned()
        } else {
            g.dead_letters.join(", ")
        },
        if g.problems.is_empty() {
            String::new()
        } else {
            format!(" Problems: {}", g.problems.join("; "))
        }
    );
}

#[cfg(test)]
mod tests {
    use super::{Guard, Side, guard_totals, section};

    #[test]
    fn the_staleness_guard_lines_are_summed_and_other_lines_ignored() {
        let lines = [
            r#"{"level":"INFO","fields":{"message":"staleness guard","records":10,"superseded":1,"guarded_users":10,"watermark_requests":20}}"#,
            r#"{"level":"INFO","fields":{"message":"applied","records":10}}"#,
            "not json",
            r#"{"level":"INFO","fields":{"message":"staleness guard","records":10,"superseded":0,"guarded_users":9,"watermark_requests":19}}"#,
        ]
        .map(str::to_owned);
        assert_eq!(guard_totals(&lines), (2, 39, 19, 1));
    }

    #[test]
    fn the_report_gives_the_difference_guard_on_minus_off_per_record() {
        let g = Guard {
            records: 100,
            batch: 10,
            batches: 10,
            off: Side {
                label: "off".into(),
                wall_ms: 200.0,
                cpu_ms: 150.0,
                updates: 100,
                ..Side::default()
            },
            on: Side {
                label: "on".into(),
                wall_ms: 1000.0,
                cpu_ms: 400.0,
                updates: 100,
                guard_lines: 10,
                watermark_requests: 210,
                guarded_users: 100,
                ..Side::default()
            },
            ..Guard::default()
        };
        let mut o = String::new();
        section(&mut o, &g);
        assert!(
            o.contains("**+8000 µs wall** and **+2500 µs CPU** per record"),
            "{o}"
        );
        assert!(o.contains("| on | 10000 µs |"), "{o}");
        assert!(o.contains("| 210 | 100 | 2.10 |"), "{o}");
        assert!(o.contains("moto"), "{o}");
    }
}
