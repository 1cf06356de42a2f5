//! `bench-driver scim`: the SCIM endpoint (`connect-identity-sync-scim`, a release build)
//! beside the function, on the harness's stack (moto SQS and Secrets Manager, the Connect
//! emulator, the Runtime API):
//!
//! 1. start-up and first reply, side by side with the do-nothing runtime binary: a fresh
//!    process per run, from spawn to the reply of its first invocation (the endpoint's
//!    includes reading its token secret, as a cold start in Lambda does);
//! 2. warm look-ups (`GET /Users?filter=userName eq "…"`) against the zero-latency
//!    emulator, p50/p99 as the harness sees them, beside the do-nothing binary's warm
//!    round trip (the Runtime API's own share of each);
//! 3. an Entra-style cycle of N users (look-up, then a PATCH of the family name) against
//!    the quota-enforcing emulator, while the function applies what is queued: its duration
//!    over the floor the endpoint's `DescribeUser` share sets (2 reads a user), the 429s it
//!    answered (each retried after `Retry-After`, as the identity providers do), its 5xx,
//!    and whether every change was applied. Time is scaled: every quota is `scale` times
//!    Connect's default, and so is every share.

use std::time::{Duration, Instant};

use connect_emulator::Operation;
use harness::fixtures;
use harness::scim::{self, Request, ScimEndpoint, TOKEN};
use harness::{Function, FunctionConfig, RuntimeApi, Stack};
use serde_json::json;

use crate::stats::Summary;

pub struct Options {
    pub function: std::path::PathBuf,
    pub scim: std::path::PathBuf,
    pub noop: std::path::PathBuf,
    pub runs: usize,
    pub users: usize,
    pub lookups: usize,
    pub scale: f64,
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Spawn to first reply, milliseconds.
async fn first_reply(
    stack: &Stack,
    config: &FunctionConfig,
    event: &serde_json::Value,
) -> Result<f64, String> {
    let runtime = RuntimeApi::start().await.map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut function = Function::start(
        config,
        &runtime,
        Some(&stack.emulator.endpoint_url()),
        Some(&stack.moto.endpoint()),
    )
    .map_err(|e| e.to_string())?;
    runtime
        .invoke_json(event, Duration::from_secs(30))
        .await
        .map_err(|e| format!("{e}\n{}", function.logs()))?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    function.kill();
    function.wait_exit(Duration::from_secs(5)).await;
    Ok(ms)
}

pub async fn run(o: &Options) -> Result<String, String> {
    let size = |p: &std::path::Path| {
        std::fs::metadata(p).map_or(0, |m| m.len()) as f64 / (1024.0 * 1024.0)
    };
    let mut out = format!(
        "### SCIM endpoint\n\nBinary sizes: connect-identity-sync-scim {:.2} MiB, the function {:.2} MiB, the do-nothing runtime {:.2} MiB.\n\n",
        size(&o.scim),
        size(&o.function),
        size(&o.noop)
    );
    let err = |e: harness::HarnessError| e.to_string();

    // ---- 1. start-up and first reply
    let stack = fixtures::stack(&o.function, o.users)
        .env("CONNECT_RPS_DESCRIBE", "1000")
        .env("CONNECT_RPS_SEARCH", "1000")
        .start()
        .await
        .map_err(err)?;
    let arn = scim::create_token_secret(
        &stack.moto.endpoint(),
        "bench-scim",
        &json!({"tokens": [TOKEN]}),
    )
    .await
    .map_err(err)?;
    let fast = scim::config(&o.scim, &stack, &arn)
        .env("CONNECT_RPS_DESCRIBE", "1000")
        .env("CONNECT_RPS_SEARCH", "1000")
        .env("CONNECT_RPS_LIST", "1000");
    let noop = FunctionConfig::new(&o.noop);
    let lookup = Request::lookup("agent0001").event();
    let spc = Request::get("/ServiceProviderConfig").event();
    let (mut scim_first, mut scim_lookup_first, mut noop_first) =
        (Vec::new(), Vec::new(), Vec::new());
    for run in 0..=o.runs {
        let s = first_reply(&stack, &fast, &spc).await?;
        let l = first_reply(&stack, &fast, &lookup).await?;
        let n = first_reply(&stack, &noop, &spc).await?;
        if run > 0 {
            scim_first.push(s);
            scim_lookup_first.push(l);
            noop_first.push(n);
        }
    }
    let (s, l, n) = (
        Summary::of(&scim_first),
        Summary::of(&scim_lookup_first),
        Summary::of(&noop_first),
    );
    let secrets = aws_sdk_secretsmanager::Client::new(
        &harness::local_aws::sdk_config(&stack.moto.endpoint()).await,
    );
    let mut secret_ms = Vec::new();
    for _ in 0..o.runs.max(1) {
        let started = Instant::now();
        secrets
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| format!("GetSecretValue: {e:?}"))?;
        secret_ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let secret = Summary::of(&secret_ms);
    out.push_str(&format!(
        "Start-up and first reply (spawn to the first invocation's reply, {} runs, median / p90 ms):\n\n\
         | binary | first request | median | p90 | ratio to do-nothing (median) |\n|---|---|---|---|---|\n\
         | do-nothing runtime | any | {:.1} | {:.1} | 1.00 |\n\
         | connect-identity-sync-scim | `GET /ServiceProviderConfig` (token secret read) | {:.1} | {:.1} | {:.2} |\n\
         | connect-identity-sync-scim | `GET /Users?filter=userName eq` (a ListUsers listing, a DescribeUser) | {:.1} | {:.1} | {:.2} |\n\n\
         The endpoint reads its token secret before it asks for its first request (it does not start without one): one `GetSecretValue` to moto took {:.1} ms (median of {} from the harness's own client), start-up's largest part here.\n\n",
        o.runs,
        n.median,
        n.p90,
        s.median,
        s.p90,
        s.median / n.median,
        l.median,
        l.p90,
        l.median / n.median,
        secret.median,
        secret.runs,
    ));

    // ---- 2. warm look-ups
    let endpoint = ScimEndpoint::start(&stack, fast.clone())
        .await
        .map_err(err)?;
    endpoint
        .send(&Request::lookup("agent0001"))
        .await
        .map_err(err)?;
    let mut lookups = Vec::new();
    for i in 0..o.lookups {
        let name = format!("agent{:04}", 1 + i % o.users.max(1));
        let started = Instant::now();
        let reply = endpoint.send(&Request::lookup(&name)).await.map_err(err)?;
        lookups.push(started.elapsed().as_secs_f64() * 1000.0);
        if reply.status != 200 || reply.body["totalResults"] != 1 {
            return Err(format!(
                "look-up of {name}: {} {}",
                reply.status, reply.text
            ));
        }
    }
    let runtime = RuntimeApi::start().await.map_err(err)?;
    let mut noop_process = Function::start(&noop, &runtime, None, None).map_err(err)?;
    let mut noop_warm = Vec::new();
    for _ in 0..o.lookups {
        let started = Instant::now();
        runtime
            .invoke_json(&lookup, Duration::from_secs(10))
            .await
            .map_err(err)?;
        noop_warm.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    noop_process.kill();
    out.push_str(&format!(
        "Warm look-ups against the zero-latency emulator ({} requests, round trip through the harness's Runtime API, ms):\n\n\
         | | p50 | p99 |\n|---|---|---|\n\
         | `GET /Users?filter=userName eq \"…\"` (one DescribeUser each) | {:.2} | {:.2} |\n\
         | do-nothing runtime, same event (the Runtime API's own share) | {:.2} | {:.2} |\n\n",
        o.lookups,
        percentile(&lookups, 0.5),
        percentile(&lookups, 0.99),
        percentile(&noop_warm, 0.5),
        percentile(&noop_warm, 0.99),
    ));
    drop(endpoint);
    drop(stack);

    // ---- 3. the Entra-style cycle against the quota-enforcing emulator
    let scale = o.scale;
    let q = |default: f64| format!("{}", default * scale);
    let containers = "2+1";
    let stack = fixtures::stack(&o.function, o.users)
        .env("CONNECT_RPS_UPDATE", q(2.0))
        .env("CONNECT_RPS_DESCRIBE", format!("{}/{containers}", q(10.0)))
        .env("CONNECT_RPS_SEARCH", format!("{}/{containers}", q(2.0)))
        .env("CONNECT_RPS_LIST", format!("{}/{containers}", q(10.0)))
        .start()
        .await
        .map_err(err)?;
    for (op, rps) in [
        (Operation::DescribeUser, 10.0),
        (Operation::UpdateUserIdentityInfo, 2.0),
        (Operation::SearchUsers, 2.0),
        (Operation::ListUsers, 10.0),
        (Operation::DescribeInstance, 2.0),
    ] {
        stack
            .emulator
            .set_quota(op, rps * scale, (5.0 * scale) as u32);
    }
    let arn = scim::create_token_secret(
        &stack.moto.endpoint(),
        "bench-scim",
        &json!({"tokens": [TOKEN]}),
    )
    .await
    .map_err(err)?;
    let config = scim::config(&o.scim, &stack, &arn)
        .env("CONNECT_RPS_DESCRIBE", format!("{}/{containers}", q(10.0)))
        .env("CONNECT_RPS_SEARCH", format!("{}/{containers}", q(2.0)))
        .env("CONNECT_RPS_LIST", format!("{}/{containers}", q(10.0)));
    let endpoint = ScimEndpoint::start(&stack, config).await.map_err(err)?;
    let share = 10.0 * scale / 3.0;
    let floor = 2.0 * o.users as f64 / share;
    let mapping = stack.mapping();
    let applying = tokio::spawn(async move {
        mapping
            .run(Duration::from_secs_f64(floor * 3.0 + 120.0))
            .await
    });
    let (mut throttled, mut server_errors, mut other) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    for n in 1..=o.users {
        let name = format!("agent{n:04}");
        let id = loop {
            let reply = endpoint.send(&Request::lookup(&name)).await.map_err(err)?;
            match reply.status {
                200 => {
                    break reply.body["Resources"][0]["id"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned();
                }
                429 => {
                    throttled += 1;
                    let wait: u64 = reply
                        .header("retry-after")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                s if s >= 500 => {
                    server_errors += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {
                    return Err(format!(
                        "look-up of {name}: {} {}",
                        reply.status, reply.text
                    ));
                }
            }
        };
        let patch = Request::patch(
            &id,
            &json!([{"op": "Replace", "path": "name.familyName", "value": format!("Cycle-{n:04}")},
                    {"op": "Replace", "path": "active", "value": "True"}]),
        );
        loop {
            let reply = endpoint.send(&patch).await.map_err(err)?;
            match reply.status {
                204 => break,
                429 => {
                    throttled += 1;
                    let wait: u64 = reply
                        .header("retry-after")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1);
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                s if s >= 500 => {
                    server_errors += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => {
                    other += 1;
                    break;
                }
            }
        }
    }
    let cycle = started.elapsed().as_secs_f64();
    let report = applying.await.map_err(|e| e.to_string())?.map_err(err)?;
    let applied_after = started.elapsed().as_secs_f64();
    let applied = (1..=o.users)
        .filter(|n| {
            stack
                .emulator
                .user(fixtures::INSTANCE, &format!("u-{n:04}"))
                .and_then(|u| u.identity_info.last_name)
                .is_some_and(|l| l == format!("Cycle-{n:04}"))
        })
        .count();
    let dead = stack.dead_letters().await.map_err(err)?;
    let dead_letters: usize = dead.values().map(Vec::len).sum();
    out.push_str(&format!(
        "Entra-style cycle: {} users, each a look-up then a PATCH, one client in sequence; time scaled \
         ×{scale} (every Connect quota and every share {scale} times the default: DescribeUser {:.0}/s \
         for the account, the endpoint's share {:.1}/s, UpdateUserIdentityInfo {:.0}/s for the function):\n\n\
         | | |\n|---|---|\n\
         | cycle duration | {:.1} s |\n\
         | floor (2 DescribeUser a user at the endpoint's share) | {:.1} s |\n\
         | duration / floor | {:.2} |\n\
         | 429 answered (retried after Retry-After) | {throttled} |\n\
         | 5xx | {server_errors} |\n\
         | other refusals | {other} |\n\
         | changes applied by the function | {applied} of {} (all applied {:.1} s after the cycle began; queue drained: {}) |\n\
         | dead letters | {dead_letters} |\n\n",
        o.users,
        10.0 * scale,
        share,
        2.0 * scale,
        cycle,
        floor,
        cycle / floor,
        o.users,
        applied_after,
        report.drained,
    ));
    drop(endpoint);
    drop(stack);
    Ok(out)
}
