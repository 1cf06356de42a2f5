//! A fault schedule for DynamoDB: a plain-HTTP/1.1 proxy in front of moto that, per item
//! (the `pk` of the request's `Key` or `Item`, by prefix), holds requests for a while,
//! (in front of moto's SQS, the same for the copies of deferred records: an SQS
//! `SendMessage` carrying the `OwnFailures` attribute is known by [`SQS_COPY`]),
//! answers them as a throttled table does (`ProvisionedThroughputExceededException` or
//! `ThrottlingException`, HTTP 400, as DynamoDB answers), fails them
//! (`InternalServerError`, HTTP 500), or carries them out and loses the reply. Requests
//! no fault matches are passed on untouched. Each fault fires a number of times or for
//! good; the first that matches a request decides.
//!
//! A held request is passed on once its delay is over (the table carries it out late,
//! as a slow table does), whether or not the client still waits for it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The key of an SQS `SendMessage` carrying the `OwnFailures` attribute (the copy of a
/// deferred record the function queues again), for a fault's `pk_prefix`.
pub const SQS_COPY: &str = "sqs-copy#SendMessage";

/// What a fault does to a request it matches.
#[derive(Clone, Debug, PartialEq)]
pub enum TableFaultKind {
    /// Held this long, then passed on.
    Slow(Duration),
    /// Answered `ProvisionedThroughputExceededException` without being carried out.
    ProvisionedThroughputExceeded,
    /// Answered `ThrottlingException` without being carried out.
    Throttling,
    /// Answered `InternalServerError` (HTTP 500) without being carried out.
    Failing,
    /// Carried out, and the reply lost (the client's connection closed).
    LoseReply,
}

/// One entry of the schedule.
#[derive(Clone, Debug)]
pub struct TableFault {
    /// Requests whose item's `pk` starts with this (empty: every request, even one that
    /// names no item).
    pub pk_prefix: String,
    pub kind: TableFaultKind,
    /// How many more requests it fires for; `None`: for good.
    pub remaining: Option<u32>,
}

impl TableFault {
    /// `kind` for every request on an item whose `pk` starts with `pk_prefix`, for good.
    #[must_use]
    pub fn always(pk_prefix: impl Into<String>, kind: TableFaultKind) -> Self {
        Self {
            pk_prefix: pk_prefix.into(),
            kind,
            remaining: None,
        }
    }

    /// `kind` for the next `count` such requests.
    #[must_use]
    pub fn times(pk_prefix: impl Into<String>, kind: TableFaultKind, count: u32) -> Self {
        Self {
            remaining: Some(count),
            ..Self::always(pk_prefix, kind)
        }
    }
}

/// What the proxy has seen.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableFaultCounts {
    /// Requests passed on untouched.
    pub passed: u32,
    /// Requests a fault matched.
    pub faulted: u32,
}

#[derive(Default)]
struct Shared {
    faults: Mutex<Vec<TableFault>>,
    counts: Mutex<TableFaultCounts>,
}

impl Shared {
    /// The fault for a request on `pk` (`None`: the request names no item), counted.
    fn fault_for(&self, pk: Option<&str>) -> Option<TableFaultKind> {
        let mut faults = self.faults.lock().expect("faults");
        let hit = faults.iter_mut().find(|f| {
            f.remaining != Some(0)
                && (f.pk_prefix.is_empty() || pk.is_some_and(|pk| pk.starts_with(&f.pk_prefix)))
        });
        let kind = hit.map(|f| {
            if let Some(n) = &mut f.remaining {
                *n -= 1;
            }
            f.kind.clone()
        });
        let mut counts = self.counts.lock().expect("counts");
        match kind {
            Some(_) => counts.faulted += 1,
            None => counts.passed += 1,
        }
        kind
    }
}

/// A running proxy; dropping it stops it.
pub struct TableFaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for TableFaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TableFaultProxy {
    /// A proxy on a free loopback port in front of `upstream` (`host:port`), with no
    /// fault yet.
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = upstream.into();
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn({
            let shared = shared.clone();
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        let _ = serve(client, &upstream, &shared).await;
                    });
                }
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://ADDR`, the endpoint to give the client.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Adds a fault after those already scheduled.
    pub fn add(&self, fault: TableFault) {
        self.shared.faults.lock().expect("faults").push(fault);
    }

    /// Ends every fault.
    pub fn clear(&self) {
        self.shared.faults.lock().expect("faults").clear();
    }

    /// What the proxy has seen so far.
    #[must_use]
    pub fn counts(&self) -> TableFaultCounts {
        self.shared.counts.lock().expect("counts").clone()
    }
}

/// The `pk` of the item a DynamoDB request names (`Key` or `Item`), if it names one;
/// [`SQS_COPY`] for an SQS `SendMessage` (JSON protocol) carrying `OwnFailures`.
fn item_pk(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    if value.get("QueueUrl").is_some()
        && value
            .get("MessageAttributes")
            .and_then(|a| a.get("OwnFailures"))
            .is_some()
    {
        return Some(SQS_COPY.to_owned());
    }
    ["Key", "Item"].iter().find_map(|field| {
        value
            .get(field)?
            .get("pk")?
            .get("S")?
            .as_str()
            .map(str::to_owned)
    })
}

/// The body of one HTTP/1.1 message.
fn body_of(message: &[u8]) -> &[u8] {
    message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(&[][..], |i| &message[i + 4..])
}

/// DynamoDB's answer for an error of `kind`: status line and JSON body.
fn error_reply(status: &str, type_: &str, message: &str) -> Vec<u8> {
    let body = format!(r#"{{"__type":"{type_}","message":"{message}"}}"#);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: table-fault\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn serve(mut client: TcpStream, upstream: &str, shared: &Shared) -> std::io::Result<()> {
    let mut server: Option<TcpStream> = None;
    let mut pending = Vec::new();
    loop {
        let Some(request) = crate::lossy::read_message(&mut client, &mut pending).await? else {
            return Ok(());
        };
        let pk = item_pk(body_of(&request));
        let fault = shared.fault_for(pk.as_deref());
        let answer = match &fault {
            Some(TableFaultKind::ProvisionedThroughputExceeded) => Some(error_reply(
                "400 Bad Request",
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded.",
            )),
            Some(TableFaultKind::Throttling) => Some(error_reply(
                "400 Bad Request",
                "com.amazon.coral.availability#ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            )),
            Some(TableFaultKind::Failing) => Some(error_reply(
                "500 Internal Server Error",
                "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "Internal server error",
            )),
            Some(TableFaultKind::Slow(delay)) => {
                tokio::time::sleep(*delay).await;
                None
            }
            Some(TableFaultKind::LoseReply) | None => None,
        };
        if let Some(answer) = answer {
            client.write_all(&answer).await?;
            continue;
        }
        let upstream_conn = match &mut server {
            Some(s) => s,
            None => server.insert(TcpStream::connect(upstream).await?),
        };
        upstream_conn.write_all(&request).await?;
        let mut upstream_pending = Vec::new();
        let Some(reply) = crate::lossy::read_message(upstream_conn, &mut upstream_pending).await?
        else {
            return Ok(());
        };
        if fault == Some(TableFaultKind::LoseReply) {
            // The table has carried the request out; the client hears nothing.
            return Ok(());
        }
        client.write_all(&reply).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_item_is_read_from_the_key_or_the_item() {
        let update = br#"{"TableName":"t","Key":{"pk":{"S":"fleet-rate#UpdateUserIdentityInfo"}}}"#;
        assert_eq!(
            item_pk(update).as_deref(),
            Some("fleet-rate#UpdateUserIdentityInfo")
        );
        let put = br#"{"TableName":"t","Item":{"pk":{"S":"i#u"},"x":{"N":"1"}}}"#;
        assert_eq!(item_pk(put).as_deref(), Some("i#u"));
        assert_eq!(item_pk(br#"{"TableName":"t"}"#), None);
        let copy = br#"{"QueueUrl":"http://q","MessageBody":"{}","MessageAttributes":{"OwnFailures":{"DataType":"Number","StringValue":"0"}}}"#;
        assert_eq!(item_pk(copy).as_deref(), Some(SQS_COPY));
        let letter = br#"{"QueueUrl":"http://q","MessageBody":"{}","MessageAttributes":{"ErrorClass":{"DataType":"String","StringValue":"UnknownError"}}}"#;
        assert_eq!(item_pk(letter), None);
    }

    #[test]
    fn the_first_matching_fault_decides_and_counted_faults_run_out() {
        let shared = Shared::default();
        shared.faults.lock().unwrap().extend([
            TableFault::times("fleet-rate#", TableFaultKind::Throttling, 1),
            TableFault::always("fleet-rate#", TableFaultKind::Failing),
        ]);
        assert_eq!(
            shared.fault_for(Some("fleet-rate#Op")),
            Some(TableFaultKind::Throttling)
        );
        assert_eq!(
            shared.fault_for(Some("fleet-rate#Op")),
            Some(TableFaultKind::Failing)
        );
        assert_eq!(shared.fault_for(Some("i#u")), None);
        assert_eq!(shared.fault_for(None), None);
        assert_eq!(
            *shared.counts.lock().unwrap(),
            TableFaultCounts {
                passed: 2,
                faulted: 2
            }
        );
    }
}
