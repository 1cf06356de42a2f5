//! A local AWS stack for running the built `connect-identity-sync` binary end to
//! end: an in-process Lambda Runtime API ([`RuntimeApi`]), the function as a child
//! process ([`Function`]), moto as Amazon SQS ([`Moto`], [`Sqs`]) and as Amazon
//! DynamoDB ([`Dynamo`]), Lambda's SQS
//! event source mapping ([`EventSourceMapping`]), and a builder that wires them
//! together with the Connect emulator ([`Stack`]); several containers on one queue, killed
//! and replaced mid-invocation ([`run_fleet`]), and another caller sharing Connect's
//! quota ([`OtherCaller`]).

pub mod dynamodb;
pub mod esm;
pub mod fixtures;
pub mod fleet;
pub mod function;
pub mod local_aws;
pub mod lossy;
pub mod moto;
pub mod other_caller;
pub mod report;
pub mod runtime_api;
pub mod scenario;
pub mod scim;
pub mod sqs;
pub mod stack;
pub mod table_faults;
pub mod tls_front;

use std::path::PathBuf;

pub use dynamodb::{Dynamo, WATERMARK_TABLE};
pub use esm::{Batch, BatchOutcome, EventSourceMapping, MappingReport, run_together, sqs_event};
pub use fleet::{FleetConfig, FleetReport, Kill, SlotReport, run_fleet};
pub use function::{Function, FunctionConfig};
pub use lossy::LossyProxy;
pub use moto::Moto;
pub use other_caller::{OTHER_CALLER_KEY, OtherCaller, OtherCallerCounts};
pub use runtime_api::{InitError, Invocation, InvokeRequest, RuntimeApi};
pub use scenario::{Scenario, ScenarioOutcome};
pub use sqs::{Attribute, Message, Outgoing, Queue, QueueSpec, Sqs};
pub use stack::{Replica, Stack, StackConfig};
pub use table_faults::{SQS_COPY, TableFault, TableFaultCounts, TableFaultKind, TableFaultProxy};
pub use tls_front::TlsFront;

pub use connect_emulator;

/// What can go wrong in the harness itself (not in the function under test).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A process or server could not be started.
    #[error("start: {0}")]
    Start(String),
    /// The function process ended while an invocation was pending.
    #[error("the function process exited ({0})")]
    ProcessExited(String),
    /// No reply in time.
    #[error("timeout: {0}")]
    Timeout(String),
    /// An SQS call failed.
    #[error("sqs: {0}")]
    Sqs(String),
    /// A DynamoDB call failed.
    #[error("dynamodb: {0}")]
    Dynamo(String),
    /// The Connect emulator failed.
    #[error("connect emulator: {0}")]
    Emulator(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The failure classes of SPEC §3 with the variable naming each one's queue.
pub const ERROR_CLASSES: [(&str, &str); 9] = [
    ("MalformedEvent", "DLQ_URL_MALFORMED_EVENT"),
    ("ValidationError", "DLQ_URL_VALIDATION_ERROR"),
    ("PolicyViolation", "DLQ_URL_POLICY_VIOLATION"),
    ("InvalidRequestException", "DLQ_URL_INVALID_REQUEST"),
    ("InvalidParameterException", "DLQ_URL_INVALID_PARAMETER"),
    ("ResourceNotFoundException", "DLQ_URL_RESOURCE_NOT_FOUND"),
    ("ThrottlingException", "DLQ_URL_THROTTLING"),
    ("InternalServiceException", "DLQ_URL_INTERNAL_SERVICE"),
    ("UnknownError", "DLQ_URL_UNKNOWN"),
];

/// The workspace root (the folder holding the root `Cargo.toml` and `.venv`).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map_or(here.clone(), PathBuf::from)
}

/// The queue-name form of a class: `ThrottlingException` → `throttling-exception`.
#[must_use]
pub fn kebab(class: &str) -> String {
    let mut out = String::new();
    for (i, c) in class.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
