//! A stand-in Lambda function for the harness's own tests: it speaks the Runtime
//! API through `lambda_runtime` and does what each event asks.
//!
//! - `{"echo": X}` replies `X` along with the context's deadline and request id;
//! - `{"fail": "Type"}` fails the invocation with that `errorType`;
//! - `{"exit": N}` ends the process with status `N`;
//! - `{"sleep_ms": N}` waits, then replies `{"slept": N}`;
//! - an SQS event replies `batchItemFailures` for every record whose body
//!   contains `fail`.
//!
//! With `FAKE_INIT_ERROR` set it reports that text as an init error and exits 1.

use std::io::{Read, Write};
use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

fn report_init_error(message: &str) {
    let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") else {
        return;
    };
    let body = json!({"errorType": "Runtime.InitError", "errorMessage": message}).to_string();
    if let Ok(mut stream) = std::net::TcpStream::connect(&api) {
        let request = format!(
            "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {api}\r\nLambda-Runtime-Function-Error-Type: Runtime.InitError\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(request.as_bytes());
        let mut reply = Vec::new();
        let _ = stream.read_to_end(&mut reply);
    }
}

async fn handle(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let (payload, context) = event.into_parts();
    if let Some(x) = payload.get("echo") {
        return Ok(
            json!({"echo": x, "deadline": context.deadline, "requestId": context.request_id, "arn": context.invoked_function_arn}),
        );
    }
    if let Some(kind) = payload.get("fail").and_then(Value::as_str) {
        return Err(format!("asked to fail with {kind}").into());
    }
    if let Some(code) = payload.get("exit").and_then(Value::as_i64) {
        std::process::exit(i32::try_from(code).unwrap_or(1));
    }
    if let Some(ms) = payload.get("sleep_ms").and_then(Value::as_u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Ok(json!({"slept": ms}));
    }
    if let Some(records) = payload.get("Records").and_then(Value::as_array) {
        let failures: Vec<Value> = records
            .iter()
            .filter(|r| {
                r.get("body")
                    .and_then(Value::as_str)
                    .is_some_and(|b| b.contains("fail"))
            })
            .map(|r| json!({"itemIdentifier": r["messageId"]}))
            .collect();
        println!(
            "batch of {} records, {} failures",
            records.len(),
            failures.len()
        );
        return Ok(json!({"batchItemFailures": failures}));
    }
    Ok(Value::Null)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if let Ok(message) = std::env::var("FAKE_INIT_ERROR") {
        eprintln!("configuration error: {message}");
        report_init_error(&message);
        std::process::exit(1);
    }
    eprintln!("fake function ready");
    lambda_runtime::run(service_fn(handle)).await
}
