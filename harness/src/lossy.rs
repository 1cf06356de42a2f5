//! A plain-HTTP/1.1 proxy that loses replies: every request is passed on to the
//! upstream (moto, say) and carried out there, but the reply to the next requests whose
//! text contains a marker (an `X-Amz-Target` such as `DynamoDB_20120810.UpdateItem`) is
//! dropped and the client's connection closed, as when a reply is lost on the network.
//! The client's SDK then sends the same request again: what a retried request finds is
//! what this lets a test see.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A running proxy; dropping it stops it.
pub struct LossyProxy {
    addr: SocketAddr,
    to_drop: Arc<AtomicU32>,
    marker: Arc<Mutex<String>>,
    seen: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

type Mutex<T> = std::sync::Mutex<T>;

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LossyProxy {
    /// A proxy on a free loopback port in front of `upstream` (`host:port`).
    ///
    /// # Errors
    /// When no port can be bound.
    pub async fn start(upstream: impl Into<String>) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = upstream.into();
        let to_drop = Arc::new(AtomicU32::new(0));
        let marker = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn({
            let (to_drop, marker, seen) = (to_drop.clone(), marker.clone(), seen.clone());
            async move {
                while let Ok((client, _)) = listener.accept().await {
                    let upstream = upstream.clone();
                    let (to_drop, marker, seen) = (to_drop.clone(), marker.clone(), seen.clone());
                    tokio::spawn(async move {
                        let _ = serve(client, &upstream, &to_drop, &marker, &seen).await;
                    });
                }
            }
        });
        Ok(LossyProxy {
            addr,
            to_drop,
            marker,
            seen,
            task,
        })
    }

    /// `http://ADDR`, the endpoint to give the client.
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Loses the replies to the next `count` requests containing `marker`.
    pub fn drop_replies(&self, marker: &str, count: u32) {
        *self.marker.lock().expect("marker") = marker.to_owned();
        self.to_drop.store(count, Ordering::SeqCst);
    }

    /// Requests containing the marker passed on so far, lost replies included.
    #[must_use]
    pub fn marked_requests(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    to_drop: &AtomicU32,
    marker: &Mutex<String>,
    seen: &AtomicU32,
) -> std::io::Result<()> {
    let mut server = TcpStream::connect(upstream).await?;
    let mut pending = Vec::new();
    loop {
        let Some(request) = read_message(&mut client, &mut pending).await? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&request);
        let marked = {
            let marker = marker.lock().expect("marker");
            !marker.is_empty() && text.contains(marker.as_str())
        };
        server.write_all(&request).await?;
        let mut upstream_pending = Vec::new();
        let Some(reply) = read_message(&mut server, &mut upstream_pending).await? else {
            return Ok(());
        };
        if marked {
            seen.fetch_add(1, Ordering::SeqCst);
            let lose = to_drop
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if lose {
                // The upstream has carried the request out; the client hears nothing.
                return Ok(());
            }
        }
        client.write_all(&reply).await?;
    }
}

/// One HTTP/1.1 message (headers and a `Content-Length` body) from `stream`, using and
/// refilling `pending`; `None` when the stream ends before one starts.
pub(crate) async fn read_message(
    stream: &mut TcpStream,
    pending: &mut Vec<u8>,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while pending.len() < head_end + length {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        pending.extend_from_slice(&buf[..n]);
    }
    Ok(Some(pending.drain(..head_end + length).collect()))
}
