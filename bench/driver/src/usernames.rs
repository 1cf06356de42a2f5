//! Users named by `Username` at scale: 200 changes for 200 distinct users against an
//! emulated quota of 2 requests/s (burst 5) on `SearchUsers` and on `ListUsers`, resolved
//! one search per username (`CONNECT_RPS_LIST=0`) and from the username index, in the
//! same run; and the function's peak RSS once it holds the index of 50,000 users.

use std::path::Path;
use std::time::{Duration, Instant};

use connect_emulator::{Operation, Seed};
use harness::{Function, FunctionConfig, Invocation, RuntimeApi};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::lab::{
    FUNCTION_TIMEOUT, INSTANCE, Lab, SqsRecord, batch_item_failures, sqs_event, username,
};
use crate::procfs;

/// One way of resolving, measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Resolution {
    pub label: String,
    pub rps_list: String,
    pub search_calls: usize,
    pub list_calls: usize,
    /// Look-up calls refused with `ThrottlingException`.
    pub throttled: usize,
    /// Changes applied (accepted updates).
    pub applied: usize,
    /// First invocation sent to the last reply, seconds.
    pub wall_s: f64,
    /// Invocations, redeliveries of handed-back records included.
    pub invocations: usize,
    pub dead_letters: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usernames {
    pub changes: usize,
    pub quota_rps: f64,
    pub quota_burst: u32,
    pub today: Resolution,
    pub index: Resolution,
    /// The index of a large instance: its users and the function's peak RSS, KiB.
    pub large_users: usize,
    pub large_peak_rss_kib: u64,
    pub large_list_calls: usize,
    pub large_applied: usize,
}

const QUOTA_RPS: f64 = 2.0;
const QUOTA_BURST: u32 = 5;
/// The large instance of the memory run.
const LARGE_INSTANCE: &str = "22222222-3333-4444-5555-666666666666";

fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
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

fn record(i: usize, instance: &str, name: &str) -> SqsRecord {
    SqsRecord::new(
        format!("msg-username-{i:05}"),
        &json!({"InstanceId": instance, "Username": name,
                "IdentityInfo": {"LastName": format!("Renamed {i}")}}),
    )
}

/// Sends `records` in SQS batches of 10, the handed-back ones again in later batches (as
/// the queue would), until every record has ended or `rounds` batches were sent.
async fn feed(
    function: &Function,
    runtime: &RuntimeApi,
    mut pending: Vec<SqsRecord>,
    rounds: usize,
) -> Result<usize, String> {
    let mut invocations = 0;
    while !pending.is_empty() && invocations < rounds {
        let batch: Vec<SqsRecord> = pending.drain(..pending.len().min(10)).collect();
        let payload = serde_json::to_vec(&sqs_event(&batch)).map_err(text)?;
        let reply = reply_of(
            runtime
                .invoke(payload, FUNCTION_TIMEOUT)
                .await
                .map_err(|e| format!("{e}; logs: {}", function.logs()))?,
        )?;
        invocations += 1;
        let failed: Vec<String> = reply["batchItemFailures"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["itemIdentifier"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let _ = batch_item_failures(&reply);
        pending.extend(batch.into_iter().filter(|r| failed.contains(&r.message_id)));
    }
    Ok(invocations)
}

fn start_function(
    lab: &Lab,
    config: &FunctionConfig,
    runtime: &RuntimeApi,
) -> Result<Function, String> {
    Function::start(
        config,
        runtime,
        Some(&lab.connect_endpoint()),
        Some(&lab.sqs_endpoint()),
    )
    .map_err(text)
}

async fn run(
    lab: &Lab,
    binary: &Path,
    changes: usize,
    rps_list: &str,
    label: &str,
) -> Result<Resolution, String> {
    lab.reset();
    lab.drain_dead_letters().await?;
    lab.emulator
        .set_quota(Operation::SearchUsers, QUOTA_RPS, QUOTA_BURST);
    lab.emulator
        .set_quota(Operation::ListUsers, QUOTA_RPS, QUOTA_BURST);
    // Look-ups at the quota; updates and reads not the bottleneck here.
    let config = lab.config(
        binary,
        &[
            ("CONNECT_RPS_SEARCH", "2"),
            ("CONNECT_RPS_LIST", rps_list),
            ("CONNECT_RPS_UPDATE", "100"),
            ("CONNECT_RPS_DESCRIBE", "100"),
        ],
    );
    let records: Vec<SqsRecord> = (1..=changes)
        .map(|n| record(n, INSTANCE, &username(n)))
        .collect();
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = start_function(lab, &config, &runtime)?;
    let t0 = Instant::now();
    let invocations = feed(&function, &runtime, records, changes).await?;
    let wall = t0.elapsed();
    function_stop(function).await;
    let journal = lab.emulator.journal();
    let count = |op: &str| journal.iter().filter(|c| c.operation == op).count();
    Ok(Resolution {
        label: label.to_owned(),
        rps_list: rps_list.to_owned(),
        search_calls: count("SearchUsers"),
        list_calls: count("ListUsers"),
        throttled: journal
            .iter()
            .filter(|c| matches!(c.operation.as_str(), "SearchUsers" | "ListUsers"))
            .filter(|c| c.error_type.as_deref() == Some("ThrottlingException"))
            .count(),
        applied: journal
            .iter()
            .filter(|c| c.operation == "UpdateUserIdentityInfo" && c.status == 200)
            .count(),
        wall_s: wall.as_secs_f64(),
        invocations,
        dead_letters: lab.drain_dead_letters().await?,
    })
}

async fn function_stop(mut function: Function) {
    function.kill();
    function.wait_exit(Duration::from_secs(10)).await;
}

/// The function's peak RSS after it listed an instance of `users` users and applied a
/// batch of changes by Username from that index.
async fn large(lab: &Lab, binary: &Path, users: usize) -> Result<(u64, usize, usize), String> {
    lab.reset();
    lab.drain_dead_letters().await?;
    let seed: Seed = serde_json::from_value(json!({
        "instances": [{"id": LARGE_INSTANCE, "identityManagementType": "CONNECT_MANAGED", "alias": "large"}],
        "users": (1..=users).map(|n| json!({
            "instanceId": LARGE_INSTANCE,
            "id": format!("{n:08x}-0000-4000-8000-{n:012x}"),
            "username": format!("agent.{n:06}@contact-centre.example.com"),
            "identityInfo": {"FirstName": "Agent", "LastName": format!("{n:06}")},
        })).collect::<Vec<_>>(),
    }))
    .map_err(text)?;
    lab.emulator.seed(&seed).map_err(text)?;
    let allowed = format!("{INSTANCE},{LARGE_INSTANCE}");
    let config = lab.config(
        binary,
        &[
            ("ALLOWED_INSTANCE_IDS", allowed.as_str()),
            ("CONNECT_RPS_LIST", "1000"),
            ("CONNECT_RPS_SEARCH", "1000"),
            ("CONNECT_RPS_UPDATE", "1000"),
            ("CONNECT_RPS_DESCRIBE", "1000"),
        ],
    );
    // More usernames in one batch than the instance has pages: the whole instance is listed.
    let pages = users.div_ceil(1000);
    let records: Vec<SqsRecord> = (1..=pages + 1)
        .map(|i| {
            let n = 1 + (i * 997) % users;
            record(
                i,
                LARGE_INSTANCE,
                &format!("agent.{n:06}@contact-centre.example.com"),
            )
        })
        .collect();
    let runtime = RuntimeApi::start().await.map_err(text)?;
    let function = start_function(lab, &config, &runtime)?;
    let payload = serde_json::to_vec(&sqs_event(&records)).map_err(text)?;
    reply_of(
        runtime
            .invoke(payload, FUNCTION_TIMEOUT)
            .await
            .map_err(|e| format!("{e}; logs: {}", function.logs()))?,
    )?;
    let peak = function
        .pid()
        .and_then(procfs::memory)
        .map_or(0, |m| m.peak_rss_kib);
    function_stop(function).await;
    let list_calls = lab.calls(Operation::ListUsers).len();
    let applied = lab
        .calls(Operation::UpdateUserIdentityInfo)
        .iter()
        .filter(|c| c.status == 200)
        .count();
    Ok((peak, list_calls, applied))
}

pub async fn usernames(
    lab: &Lab,
    binary: &Path,
    changes: usize,
    large_users: usize,
) -> Result<Usernames, String> {
    let today = run(
        lab,
        binary,
        changes,
        "0",
        "SearchUsers per username (CONNECT_RPS_LIST=0)",
    )
    .await?;
    let index = run(
        lab,
        binary,
        changes,
        "2",
        "cost decision: ListUsers index (CONNECT_RPS_LIST=2)",
    )
    .await?;
    let (peak, list_calls, applied) = large(lab, binary, large_users).await?;
    Ok(Usernames {
        changes,
        quota_rps: QUOTA_RPS,
        quota_burst: QUOTA_BURST,
        today,
        index,
        large_users,
        large_peak_rss_kib: peak,
        large_list_calls: list_calls,
        large_applied: applied,
    })
}
