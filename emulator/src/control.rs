//! The control API under `/_emulator/`: lets a test or a demo operator seed data, script
//! failures, quotas and latency, and read back the journal and user state over plain JSON,
//! without SigV4. `GET /_emulator/stats` counts the calls and throttles per operation,
//! overall and per caller (access key id). Every route maps onto a [`Store`] method, the same ones the Rust
//! [`crate::EmulatorHandle`] calls.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::model::{Fault, Operation, Seed};
use crate::store::Store;
use crate::wire::{Reply, json_reply};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QuotaRequest {
    operation: Operation,
    #[serde(default)]
    rps: Option<f64>,
    #[serde(default)]
    burst: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LatencyRequest {
    /// `None` sets the delay on every operation.
    #[serde(default)]
    operation: Option<Operation>,
    #[serde(default)]
    ms: u64,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        }
    }
}

/// Answers a control request; `segments` are the path segments after `_emulator`.
pub fn handle(store: &Store, method: &Method, segments: &[String], body: &Bytes) -> Reply {
    match route(store, method, segments, body) {
        Ok(value) => json_reply(StatusCode::OK, &value),
        Err(e) => json_reply(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            &json!({ "errorType": e.error_type, "message": e.message }),
        ),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::named("BadControlRequest", format!("invalid request body: {e}")))
}

fn route(
    store: &Store,
    method: &Method,
    segments: &[String],
    body: &Bytes,
) -> Result<Value, ApiError> {
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["health"]) => Ok(json!({ "status": "ok" })),
        ("POST", ["seed"]) => {
            let seed: Seed = parse(body)?;
            Ok(json!(store.seed(&seed)?))
        }
        ("POST", ["reset"]) => {
            store.reset();
            Ok(json!({}))
        }
        ("GET", ["faults"]) => Ok(json!(store.faults())),
        ("POST", ["faults"]) => {
            let faults: OneOrMany<Fault> = parse(body)?;
            for fault in faults.into_vec() {
                store.add_fault(fault);
            }
            Ok(json!(store.faults()))
        }
        ("DELETE", ["faults"]) => {
            store.clear_faults();
            Ok(json!([]))
        }
        ("POST", ["quota"]) => {
            let request: QuotaRequest = parse(body)?;
            store.set_quota(request.operation, request.rps, request.burst)?;
            Ok(json!({}))
        }
        ("POST", ["latency"]) => {
            let request: LatencyRequest = parse(body)?;
            let delay = Duration::from_millis(request.ms);
            match request.operation {
                Some(op) => store.set_latency(op, delay),
                None => Operation::ALL
                    .into_iter()
                    .for_each(|op| store.set_latency(op, delay)),
            }
            Ok(json!({}))
        }
        ("GET", ["journal"]) => Ok(json!(store.journal())),
        ("GET", ["stats"]) => Ok(json!(store.stats())),
        ("DELETE", ["journal"]) => {
            store.clear_journal();
            Ok(json!([]))
        }
        ("GET", ["instances", instance]) => store
            .instance(instance)
            .map(|i| json!(i))
            .ok_or_else(|| ApiError::not_found(format!("no instance {instance}"))),
        ("GET", ["users", instance]) => store
            .users(instance)
            .map(|u| json!(u))
            .ok_or_else(|| ApiError::not_found(format!("no instance {instance}"))),
        ("GET", ["users", instance, user]) => store
            .user(instance, user)
            .map(|u| json!(u))
            .ok_or_else(|| ApiError::not_found(format!("no user {user} in {instance}"))),
        _ => Err(ApiError::named(
            "UnknownOperationException",
            format!("no control route {method} /_emulator/{}", seg.join("/")),
        )),
    }
}
