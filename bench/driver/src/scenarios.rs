//! The measurements: start-up, memory and CPU under load, throughput against a quota,
//! and the cost of duplicates and no-ops.

use std::path::Path;
use std::time::{Duration, Instant};

use connect_emulator::Operation;
use harness::{Function, FunctionConfig, Invocation, RuntimeApi};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lab::{
    FUNCTION_TIMEOUT, Lab, SqsRecord, TlsFront, USERS, batch_item_failures, canonical, eventbridge,
    scim, sqs_event,
};
use crate::procfs;
use crate::stats::Summary;

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn start(lab: &Lab, config: &FunctionConfig, runtime: &RuntimeApi) -> Result<Function, String> {
    Function::start(
        config,
        runtime,
        Some(&lab.connect_endpoint()),
        Some(&lab.sqs_endpoint()),
    )
    .map_err(text)
}

async fn stop(mut function: Function) {
    function.kill();
    function.wait_exit(Duration::from_secs(10)).await;
}

fn reply_of(invocation: Invocation) -> Result<Value, String> {
    match invocation {
        Invocation::Response(v) => Ok(v),
        Invocation::Error {
            error_type,
            error_message,
            ..
        } => Err(format!("invocation error {error_type}: {error_message}")),
    }
}

// ---------------------------------------------------------------------------------
// 1. Start-up

/// One binary's start-up over several runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Startup {
    /// Process start → first `GET /runtime/invocation/next`, ms.
    pub to_next_ms: Summary,
    /// Process start → the reply to the first invocation, ms.
    pub to_reply_ms: Summary,
    /// CPU time of the process (all its threads) when the first reply is in, ms.
    #[serde(default)]
    pub cpu_to_reply_ms: Summary,
    /// Peak RSS once the first reply is in, KiB.
    pub peak_rss_kib: Summary,
    /// Replies that were not what the binary should answer.
    pub unexpected: Vec<String>,
}

/// Start-up of the function and of the do-nothing binary, measured alternately.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StartupPair {
    /// Connect over plain HTTP on loopback.
    pub function: Startup,
    /// Connect over HTTPS (a TLS front, the system's CA roots): roots loaded, one handshake.
    #[serde(default)]
    pub function_tls: Option<Startup>,
    /// Connect over HTTP, the change without a `Mobile` (no phone-number metadata loaded).
    #[serde(default)]
    pub function_no_mobile: Option<Startup>,
    pub noop: Startup,
}

struct StartSample {
    to_next: Duration,
    to_reply: Duration,
    cpu: Duration,
    peak_rss_kib: u64,
    reply: Result<Value, String>,
}

/// The first invocation of a start-up run: one EventBridge change that needs an update.
pub fn startup_event(run: usize) -> Value {
    let user = 1 + run % 200;
    eventbridge(
        &format!("5d1f2a3c-0000-4000-8000-{run:012}"),
        canonical(
            user,
            json!({"FirstName": format!("Start{run}"), "Mobile": "(415) 555-0100"}),
        ),
    )
}

/// As [`startup_event`] without a `Mobile`.
pub fn startup_event_without_mobile(run: usize) -> Value {
    let user = 1 + run % 200;
    eventbridge(
        &format!("5d1f2a3c-0000-4000-8000-{run:012}"),
        canonical(user, json!({"FirstName": format!("Start{run}")})),
    )
}

async fn start_once(
    lab: &Lab,
    config: &FunctionConfig,
    event: &Value,
) -> Result<StartSample, String> {
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let invoker = runtime.clone();
    let payload = serde_json::to_vec(event).map_err(text)?;
    let reply = tokio::spawn(async move {
        let reply = invoker.invoke(payload, FUNCTION_TIMEOUT).await;
        (reply, Instant::now())
    });
    // Let the invocation be queued before the process starts, as on Lambda.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let watched = runtime.clone();
    let watcher = std::thread::spawn(move || {
        let limit = Instant::now() + Duration::from_secs(60);
        while Instant::now() < limit {
            if watched.invocations_handed_out() > 0 {
                return Some(Instant::now());
            }
            std::thread::sleep(Duration::from_micros(100));
        }
        None
    });
    let t0 = Instant::now();
    let function = start(lab, config, &runtime)?;
    let (result, replied_at) = reply.await.map_err(text)?;
    let memory = function.pid().and_then(procfs::memory).unwrap_or_default();
    let cpu = function
        .pid()
        .and_then(procfs::thread_cpu_time)
        .unwrap_or_default();
    let polled_at = watcher
        .join()
        .map_err(|_| "watcher panicked".to_owned())?
        .ok_or("the process never polled for an invocation")?;
    let logs = function.logs();
    stop(function).await;
    let reply = result
        .map_err(|e| format!("{e}; logs: {logs}"))
        .and_then(reply_of);
    Ok(StartSample {
        to_next: polled_at.saturating_duration_since(t0),
        to_reply: replied_at.saturating_duration_since(t0),
        cpu,
        peak_rss_kib: memory.peak_rss_kib,
        reply,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summarise(samples: &[StartSample], expected: &Value) -> Startup {
    let unexpected = samples
        .iter()
        .filter_map(|s| match &s.reply {
            Ok(v) if v == expected => None,
            Ok(v) => Some(v.to_string()),
            Err(e) => Some(e.clone()),
        })
        .collect();
    Startup {
        to_next_ms: Summary::of(&samples.iter().map(|s| ms(s.to_next)).collect::<Vec<_>>()),
        to_reply_ms: Summary::of(&samples.iter().map(|s| ms(s.to_reply)).collect::<Vec<_>>()),
        cpu_to_reply_ms: Summary::of(&samples.iter().map(|s| ms(s.cpu)).collect::<Vec<_>>()),
        peak_rss_kib: Summary::of(
            &samples
                .iter()
                .map(|s| s.peak_rss_kib as f64)
                .collect::<Vec<_>>(),
        ),
        unexpected,
    }
}

/// `runs` cold starts of each binary (and of the function over HTTPS when `tls` is
/// given), alternating, after one unrecorded start of each (so the binaries are in
/// the page cache).
pub async fn startup(
    lab: &Lab,
    function: &Path,
    noop: &Path,
    runs: usize,
    tls: Option<&TlsFront>,
) -> Result<StartupPair, String> {
    let variants = [(function.to_path_buf(), noop.to_path_buf())];
    let mut pairs = startup_variants(lab, &variants, runs, tls).await?;
    pairs.pop().ok_or_else(|| "no start-up figures".to_owned())
}

/// As [`startup`] for several (function, do-nothing) pairs, interleaved run by run so
/// that whatever else the machine does weighs on all of them alike.
pub async fn startup_variants(
    lab: &Lab,
    variants: &[(std::path::PathBuf, std::path::PathBuf)],
    runs: usize,
    tls: Option<&TlsFront>,
) -> Result<Vec<StartupPair>, String> {
    lab.reset();
    struct Configs {
        function: FunctionConfig,
        tls: Option<FunctionConfig>,
        noop: FunctionConfig,
    }
    let configs: Vec<Configs> = variants
        .iter()
        .map(|(function, noop)| Configs {
            function: lab.config(function, &[]),
            tls: tls.map(|t| {
                lab.config(
                    function,
                    &[
                        ("AWS_ENDPOINT_URL_CONNECT", &t.endpoint),
                        ("SSL_CERT_FILE", &t.bundle.to_string_lossy()),
                    ],
                )
            }),
            noop: lab.config(noop, &[]),
        })
        .collect();
    let mut samples: Vec<(Vec<StartSample>, Vec<StartSample>, Vec<StartSample>)> =
        configs.iter().map(|_| Default::default()).collect();
    let mut without_mobile: Vec<Vec<StartSample>> = configs.iter().map(|_| Vec::new()).collect();
    let mut event_no = 0;
    for run in 0..=runs {
        for ((config, (f, t, n)), m) in configs
            .iter()
            .zip(samples.iter_mut())
            .zip(without_mobile.iter_mut())
        {
            event_no += 1;
            let ms = start_once(
                lab,
                &config.function,
                &startup_event_without_mobile(event_no),
            )
            .await?;
            event_no += 1;
            let fs = start_once(lab, &config.function, &startup_event(event_no)).await?;
            let ts = match &config.tls {
                Some(tls) => {
                    event_no += 1;
                    Some(start_once(lab, tls, &startup_event(event_no)).await?)
                }
                None => None,
            };
            let ns = start_once(lab, &config.noop, &startup_event(event_no)).await?;
            if run > 0 {
                f.push(fs);
                t.extend(ts);
                n.push(ns);
                m.push(ms);
            }
        }
    }
    let updated = json!({"outcome": "updated"});
    Ok(samples
        .iter()
        .zip(&without_mobile)
        .map(|((f, t, n), m)| StartupPair {
            function: summarise(f, &updated),
            function_tls: tls.map(|_| summarise(t, &updated)),
            function_no_mobile: Some(summarise(m, &updated)),
            noop: summarise(n, &json!({})),
        })
        .collect())
}

// ---------------------------------------------------------------------------------
// 2. Memory and CPU under load

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Load {
    pub records: usize,
    pub batches: usize,
    /// `VmHWM` at the end: the peak over start-up and every batch.
    pub peak_rss_kib: u64,
    /// `VmRSS` at the end.
    pub rss_end_kib: u64,
    /// Of which anonymous memory (heap, stacks) and file-backed pages, KiB.
    #[serde(default)]
    pub anon_end_kib: u64,
    #[serde(default)]
    pub file_end_kib: u64,
    /// CPU used by start-up and the first (one-record) invocation, which loads what is
    /// loaded on first use (the phone number metadata among others).
    pub warm_up_cpu_ms: f64,
    /// CPU used by the batches.
    pub cpu_ms: f64,
    pub wall_ms: f64,
    /// `UpdateUserIdentityInfo` calls answered with success.
    pub updates: usize,
    pub describe_user_calls: usize,
    pub search_users_calls: usize,
    pub list_users_calls: usize,
    /// Records handed back in `batchItemFailures`.
    pub handed_back: usize,
    pub dead_letters: Vec<String>,
    pub problems: Vec<String>,
}

impl Load {
    pub fn cpu_us_per_record(&self) -> f64 {
        self.cpu_ms * 1000.0 / self.records.max(1) as f64
    }
}

/// Record `i` of the load: a mix of bare canonical documents, EventBridge events in
/// the SQS body and SCIM Users, each a real change to a different user.
fn load_record(i: usize) -> SqsRecord {
    let n = i + 1;
    let mobile = format!("(415) 555-01{:02}", i % 100);
    let body = match i % 4 {
        0 | 1 => canonical(
            n,
            json!({"FirstName": "Bench", "LastName": format!("Load {i}"), "Mobile": mobile}),
        ),
        2 => eventbridge(
            &format!("evt-load-{i}"),
            canonical(
                n,
                json!({"LastName": format!("Load {i}"), "Mobile": mobile}),
            ),
        ),
        _ => scim(n, "Bench", &format!("Load {i}"), Some(&mobile)),
    };
    SqsRecord::new(format!("msg-load-{i:05}"), &body)
}

/// Runs `records` changes in batches of `batch` through one process of `binary`.
pub async fn load(
    lab: &Lab,
    binary: &Path,
    records: usize,
    batch: usize,
    is_function: bool,
) -> Result<Load, String> {
    lab.reset();
    lab.drain_dead_letters().await?;
    let ticks = procfs::ticks_per_second();
    let config = lab.config(
        binary,
        &[
            ("CONNECT_RPS_UPDATE", "1000"),
            ("CONNECT_RPS_DESCRIBE", "1000"),
            ("CONNECT_RPS_SEARCH", "1000"),
        ],
    );
    let payloads: Vec<Vec<u8>> = (0..records)
        .collect::<Vec<_>>()
        .chunks(batch.max(1))
        .map(|chunk| {
            let recs: Vec<SqsRecord> = chunk.iter().map(|&i| load_record(i)).collect();
            serde_json::to_vec(&sqs_event(&recs)).expect("event")
        })
        .collect();
    let warm_up = serde_json::to_vec(&eventbridge(
        "evt-load-warm-up",
        canonical(
            USERS,
            json!({"FirstName": "Warm", "Mobile": "(415) 555-0199"}),
        ),
    ))
    .map_err(text)?;

    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = start(lab, &config, &runtime)?;
    let pid = function.pid().ok_or("no pid")?;
    let mut problems = Vec::new();
    reply_of(
        runtime
            .invoke(warm_up, FUNCTION_TIMEOUT)
            .await
            .map_err(text)?,
    )?;
    lab.emulator.clear_journal();
    let cpu0 = procfs::cpu_time(pid, ticks).ok_or("no /proc stat")?;
    let t0 = Instant::now();
    let mut handed_back = 0;
    for payload in &payloads {
        let reply = reply_of(
            runtime
                .invoke(payload.clone(), FUNCTION_TIMEOUT)
                .await
                .map_err(|e| format!("{e}; logs: {}", function.logs()))?,
        )?;
        if is_function {
            match batch_item_failures(&reply) {
                Some(n) => handed_back += n,
                None => problems.push(format!("not a batch response: {reply}")),
            }
        }
    }
    let wall = t0.elapsed();
    let cpu1 = procfs::cpu_time(pid, ticks).ok_or("no /proc stat")?;
    let memory = procfs::memory(pid).ok_or("no /proc status")?;
    let (anon_end_kib, file_end_kib) = procfs::resident_split(pid).unwrap_or_default();
    stop(function).await;
    let updates = lab
        .calls(Operation::UpdateUserIdentityInfo)
        .iter()
        .filter(|c| c.status == 200)
        .count();
    if is_function && updates != records {
        problems.push(format!("{updates} updates for {records} changes"));
    }
    problems.truncate(5);
    Ok(Load {
        records,
        batches: payloads.len(),
        peak_rss_kib: memory.peak_rss_kib,
        rss_end_kib: memory.rss_kib,
        anon_end_kib,
        file_end_kib,
        warm_up_cpu_ms: ms(cpu0),
        cpu_ms: ms(cpu1.saturating_sub(cpu0)),
        wall_ms: ms(wall),
        updates,
        describe_user_calls: lab.calls(Operation::DescribeUser).len(),
        search_users_calls: lab.calls(Operation::SearchUsers).len(),
        list_users_calls: lab.calls(Operation::ListUsers).len(),
        handed_back,
        dead_letters: lab.drain_dead_letters().await?,
        problems,
    })
}

// ---------------------------------------------------------------------------------
// 3. Throughput against Connect's quota

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Quota {
    pub quota_rps: f64,
    pub quota_burst: u32,
    pub rps_update: String,
    pub rps_describe: String,
    pub changes: usize,
    pub updates: usize,
    /// Calls refused with `ThrottlingException`, every operation.
    pub throttled: usize,
    /// Of which `UpdateUserIdentityInfo`.
    pub throttled_updates: usize,
    /// First to last accepted update, seconds.
    pub span_s: f64,
    /// Accepted updates per second over that span: (updates − 1) / span.
    pub rate: f64,
    /// First invocation sent to last reply, seconds.
    pub wall_s: f64,
    pub handed_back: usize,
    pub dead_letters: Vec<String>,
}

impl Quota {
    pub fn efficiency(&self) -> f64 {
        self.rate / self.quota_rps
    }
}

/// `changes` updates to distinct users in batches of 10 against a quota of `rps`
/// updates a second (bucket of `burst`), with the function's own limiter at
/// `rps_update` and `rps_describe`.
pub async fn quota(
    lab: &Lab,
    binary: &Path,
    changes: usize,
    rps: f64,
    burst: u32,
    rps_update: &str,
    rps_describe: Option<&str>,
) -> Result<Quota, String> {
    lab.reset();
    lab.drain_dead_letters().await?;
    lab.emulator
        .set_quota(Operation::UpdateUserIdentityInfo, rps, burst);
    let mut extra = vec![("CONNECT_RPS_UPDATE", rps_update)];
    if let Some(d) = rps_describe {
        extra.push(("CONNECT_RPS_DESCRIBE", d));
    }
    let config = lab.config(binary, &extra);
    let payloads: Vec<Vec<u8>> = (0..changes)
        .collect::<Vec<_>>()
        .chunks(10)
        .map(|chunk| {
            let recs: Vec<SqsRecord> = chunk
                .iter()
                .map(|&i| {
                    SqsRecord::new(
                        format!("msg-quota-{i:05}"),
                        &canonical(
                            i + 1,
                            json!({"FirstName": "Quota", "LastName": format!("Quota {i}")}),
                        ),
                    )
                })
                .collect();
            serde_json::to_vec(&sqs_event(&recs)).expect("event")
        })
        .collect();
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = start(lab, &config, &runtime)?;
    let t0 = Instant::now();
    let mut handed_back = 0;
    for payload in payloads {
        let reply = reply_of(
            runtime
                .invoke(payload, FUNCTION_TIMEOUT)
                .await
                .map_err(|e| format!("{e}; logs: {}", function.logs()))?,
        )?;
        handed_back += batch_item_failures(&reply).unwrap_or(0);
    }
    let wall = t0.elapsed();
    stop(function).await;
    let journal = lab.emulator.journal();
    let throttled = |op: Option<&str>| {
        journal
            .iter()
            .filter(|c| c.error_type.as_deref() == Some("ThrottlingException"))
            .filter(|c| op.is_none_or(|op| c.operation == op))
            .count()
    };
    let accepted: Vec<u64> = journal
        .iter()
        .filter(|c| c.operation == "UpdateUserIdentityInfo" && c.status == 200)
        .map(|c| c.at)
        .collect();
    let span_s = match (accepted.iter().min(), accepted.iter().max()) {
        (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
        _ => 0.0,
    };
    let rate = if span_s > 0.0 {
        (accepted.len() - 1) as f64 / span_s
    } else {
        0.0
    };
    Ok(Quota {
        quota_rps: rps,
        quota_burst: burst,
        rps_update: rps_update.to_owned(),
        rps_describe: rps_describe.unwrap_or("10 (default)").to_owned(),
        changes,
        updates: accepted.len(),
        throttled: throttled(None),
        throttled_updates: throttled(Some("UpdateUserIdentityInfo")),
        span_s,
        rate,
        wall_s: wall.as_secs_f64(),
        handed_back,
        dead_letters: lab.drain_dead_letters().await?,
    })
}

// ---------------------------------------------------------------------------------
// 4. Duplicates and no-ops

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub changes: usize,
    pub update_calls: usize,
    pub describe_user_calls: usize,
    pub search_users_calls: usize,
    /// Whether this phase must make no update call.
    pub must_be_zero: bool,
    pub problems: Vec<String>,
}

impl Phase {
    pub fn updates_per_change(&self) -> f64 {
        self.update_calls as f64 / self.changes.max(1) as f64
    }
}

fn applied_change(n: usize) -> Value {
    canonical(
        n,
        json!({"FirstName": "Dana", "LastName": format!("Dup {n}"), "Mobile": "+1 415 555 0142"}),
    )
}

/// Changes that are applied once, then delivered again in several ways, and changes
/// that ask for what Connect already holds.
pub async fn duplicates(lab: &Lab, binary: &Path) -> Result<Vec<Phase>, String> {
    lab.reset();
    lab.drain_dead_letters().await?;
    let config = lab.config(
        binary,
        &[
            ("CONNECT_RPS_UPDATE", "1000"),
            ("CONNECT_RPS_DESCRIBE", "1000"),
            ("CONNECT_RPS_SEARCH", "1000"),
        ],
    );
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = start(lab, &config, &runtime)?;

    let first: Vec<SqsRecord> = (1..=100)
        .map(|n| SqsRecord::new(format!("msg-dup-{n:03}"), &applied_change(n)))
        .collect();
    let redelivered: Vec<SqsRecord> = (1..=100)
        .map(|n| SqsRecord {
            receive_count: 2,
            ..SqsRecord::new(format!("msg-dup-{n:03}"), &applied_change(n))
        })
        .collect();
    let doubled: Vec<SqsRecord> = (1..=50)
        .flat_map(|n| {
            [
                SqsRecord::new(format!("msg-twice-{n:03}-a"), &applied_change(n)),
                SqsRecord::new(format!("msg-twice-{n:03}-b"), &applied_change(n)),
            ]
        })
        .collect();
    let noop_canonical: Vec<SqsRecord> = (101..=200)
        .map(|n| {
            SqsRecord::new(
                format!("msg-noop-{n:03}"),
                &canonical(
                    n,
                    json!({"FirstName": " Agent ", "LastName": format!("{n:04}"),
                           "Email": format!("agent{n:04}@example.com")}),
                ),
            )
        })
        .collect();
    let noop_scim: Vec<SqsRecord> = (201..=300)
        .map(|n| {
            SqsRecord::new(
                format!("msg-noop-scim-{n:03}"),
                &scim(n, "Agent", &format!("{n:04}"), None),
            )
        })
        .collect();

    let mut phases = Vec::new();
    let plans: [(&str, &[SqsRecord], bool); 5] = [
        ("first delivery: 100 changes applied", &first, false),
        (
            "the same 100 messages redelivered (later invocations)",
            &redelivered,
            true,
        ),
        ("each applied change twice in one batch", &doubled, true),
        (
            "canonical changes to the values Connect holds",
            &noop_canonical,
            true,
        ),
        ("SCIM Users equal to what Connect holds", &noop_scim, true),
    ];
    for (name, records, must_be_zero) in plans {
        lab.emulator.clear_journal();
        let mut problems = Vec::new();
        for chunk in records.chunks(10) {
            let reply = reply_of(
                runtime
                    .invoke(
                        serde_json::to_vec(&sqs_event(chunk)).map_err(text)?,
                        FUNCTION_TIMEOUT,
                    )
                    .await
                    .map_err(|e| format!("{e}; logs: {}", function.logs()))?,
            )?;
            if batch_item_failures(&reply) != Some(0) {
                problems.push(format!("reply {reply}"));
            }
        }
        phases.push(phase(lab, name, records.len(), must_be_zero, problems));
    }

    // A direct EventBridge event delivered again (Lambda's own retry).
    lab.emulator.clear_journal();
    let mut problems = Vec::new();
    let event = eventbridge("evt-dup-direct", applied_change(1));
    for _ in 0..20 {
        let reply = reply_of(
            runtime
                .invoke_json(&event, FUNCTION_TIMEOUT)
                .await
                .map_err(text)?,
        )?;
        if reply != json!({"outcome": "unchanged"}) {
            problems.push(format!("reply {reply}"));
        }
    }
    phases.push(phase(
        lab,
        "an applied EventBridge event delivered 20 more times",
        20,
        true,
        problems,
    ));
    stop(function).await;
    let dead = lab.drain_dead_letters().await?;
    if !dead.is_empty()
        && let Some(last) = phases.last_mut()
    {
        last.problems.push(format!("dead letters: {dead:?}"));
    }
    Ok(phases)
}

fn phase(
    lab: &Lab,
    name: &str,
    changes: usize,
    must_be_zero: bool,
    mut problems: Vec<String>,
) -> Phase {
    problems.truncate(3);
    Phase {
        name: name.to_owned(),
        changes,
        update_calls: lab.calls(Operation::UpdateUserIdentityInfo).len(),
        describe_user_calls: lab.calls(Operation::DescribeUser).len(),
        search_users_calls: lab.calls(Operation::SearchUsers).len(),
        must_be_zero,
        problems,
    }
}
