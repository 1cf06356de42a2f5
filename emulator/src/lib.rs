//! A local Amazon Connect for tests and demos. It speaks Connect's REST-JSON wire protocol
//! over HTTP, so the real `aws-sdk-connect` client talks to it unchanged (point
//! `AWS_ENDPOINT_URL_CONNECT` or `endpoint_url` at [`EmulatorHandle::endpoint_url`]), and it
//! enforces what Connect documents for `UpdateUserIdentityInfo` so a client that the real service
//! would refuse is refused here too. Failures the real service produces only occasionally —
//! throttling, internal errors, timeouts, dropped connections — can be scripted.
//!
//! Implemented operations: `DescribeInstance`, `DescribeUser`, `UpdateUserIdentityInfo`,
//! `SearchUsers`, `ListUsers`, `CreateUser`, `DeleteUser`. `ListUsers` and `SearchUsers` page as
//! Connect documents (`MaxResults` 1–1000 and 1–500, 100 by default; opaque `NextToken`s valid
//! only for the listing that issued them), and a quota set on either throttles it.
//!
//! Quotas are account-wide, as Connect's are: one token bucket per operation, shared by every
//! caller and instance, so a second client (another tool in the account, signed with other
//! credentials) draws on the same bucket as the function. [`EmulatorHandle::stats`] (and
//! `GET /_emulator/stats`) count the calls and throttles per operation and per caller.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use connect_emulator::{Emulator, Fault, Operation, Seed};
//! let emulator = Emulator::start("127.0.0.1:0").await?;
//! let seed: Seed = serde_json::from_str(r#"{"instances":[{"id":"i-1"}],
//!     "users":[{"instanceId":"i-1","id":"u-1","username":"jdoe",
//!               "identityInfo":{"FirstName":"Jane","LastName":"Doe"}}]}"#).unwrap();
//! emulator.seed(&seed).unwrap();
//! emulator.inject_fault(Fault::new(Operation::UpdateUserIdentityInfo, "ThrottlingException", 2));
//! println!("{}", emulator.endpoint_url());
//! emulator.shutdown().await;
//! # Ok(()) }
//! ```

mod control;
mod error;
mod model;
mod store;
mod validate;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

pub use error::{ApiError, status_for};
pub use model::{
    CallCounts, Fault, IdentityInfo, IdentityManagementType, Instance, JournalEntry, Operation,
    OperationStats, PhoneConfig, Seed, SeedInstance, SeedResult, SeedUser, SeededUser, User,
};
pub use store::{Account, DEFAULT_ROUTING_PROFILE_ID, instance_id_of};
pub use validate::{EMAIL_MAX, FIRST_NAME_MAX, LAST_NAME_MAX, is_e164, is_email};

use store::Store;
use wire::ServeOptions;

/// Entry point: starts emulators.
pub struct Emulator;

impl Emulator {
    /// Starts an empty emulator (region `us-east-1`, account `123456789012`) listening on
    /// `addr`; `"127.0.0.1:0"` picks a free port.
    pub async fn start(addr: impl ToSocketAddrs) -> io::Result<EmulatorHandle> {
        Self::builder().start(addr).await
    }

    /// An emulator with a different account, an initial seed or request logging.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }
}

/// Configures an emulator before it starts.
#[derive(Debug, Clone, Default)]
pub struct EmulatorBuilder {
    account: Account,
    seed: Seed,
    options: ServeOptions,
}

impl EmulatorBuilder {
    /// Region used in ARNs (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.account.region = region.into();
        self
    }

    /// Account id used in ARNs (default `123456789012`).
    pub fn account_id(mut self, account_id: impl Into<String>) -> Self {
        self.account.account_id = account_id.into();
        self
    }

    /// Data loaded at start, and restored by [`EmulatorHandle::reset`].
    pub fn seed(mut self, seed: Seed) -> Self {
        self.seed = seed;
        self
    }

    /// Logs one line per Connect call on stderr (operation, ids, status; no identity data).
    pub fn log_requests(mut self, on: bool) -> Self {
        self.options.log_requests = on;
        self
    }

    /// Binds `addr` and starts serving on the current tokio runtime.
    pub async fn start(self, addr: impl ToSocketAddrs) -> io::Result<EmulatorHandle> {
        let store = Store::new(self.account, self.seed)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let store = Arc::new(store);
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(listener, store.clone(), self.options, stopped));
        Ok(EmulatorHandle {
            addr,
            store,
            stop: Some(stop),
            task: Some(task),
        })
    }
}

async fn accept_loop(
    listener: TcpListener,
    store: Arc<Store>,
    options: ServeOptions,
    mut stopped: oneshot::Receiver<()>,
) {
    // Dropping the set at the end aborts the open connections.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else {
                    // Transient accept failures (e.g. out of file descriptors): back off.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let store = store.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        wire::serve(store.clone(), options, request)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }
    }
}

/// A running emulator. Dropping it stops the server; [`EmulatorHandle::shutdown`] also waits
/// for it to stop.
pub struct EmulatorHandle {
    addr: SocketAddr,
    store: Arc<Store>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorHandle")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EmulatorHandle {
    /// The address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the value for `AWS_ENDPOINT_URL_CONNECT` or the SDK's `endpoint_url`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Region and account used in ARNs.
    pub fn account(&self) -> &Account {
        self.store.account()
    }

    /// `arn:aws:connect:{region}:{account}:instance/{id}`.
    pub fn instance_arn(&self, instance_id: &str) -> String {
        self.store.account().instance_arn(instance_id)
    }

    /// `arn:aws:connect:{region}:{account}:instance/{id}/agent/{user}`.
    pub fn user_arn(&self, instance_id: &str, user_id: &str) -> String {
        self.store.account().user_arn(instance_id, user_id)
    }

    /// Loads instances and users (upsert by id); returns the ids, generated ones included.
    pub fn seed(&self, seed: &Seed) -> Result<SeedResult, ApiError> {
        self.store.seed(seed)
    }

    /// [`EmulatorHandle::seed`] from JSON in the `/_emulator/seed` format.
    pub fn seed_json(&self, seed: serde_json::Value) -> Result<SeedResult, ApiError> {
        let seed: Seed = serde_json::from_value(seed)
            .map_err(|e| ApiError::named("BadControlRequest", e.to_string()))?;
        self.store.seed(&seed)
    }

    /// Adds a fault; faults fire in the order they were added, each `count` times.
    pub fn inject_fault(&self, fault: Fault) {
        self.store.add_fault(fault);
    }

    /// Faults still pending, with their remaining counts.
    pub fn faults(&self) -> Vec<Fault> {
        self.store.faults()
    }

    pub fn clear_faults(&self) {
        self.store.clear_faults();
    }

    /// Limits `operation` to a token bucket of `rps` tokens a second holding at most `burst`
    /// (starts full). Calls over it fail with `ThrottlingException`.
    ///
    /// # Panics
    /// If `rps` is not a positive number.
    pub fn set_quota(&self, operation: Operation, rps: f64, burst: u32) {
        self.store
            .set_quota(operation, Some(rps), Some(burst))
            .expect("rps must be positive");
    }

    pub fn clear_quota(&self, operation: Operation) {
        let _ = self.store.set_quota(operation, None, None);
    }

    /// Delays every answer to `operation` by `delay` (zero removes the delay).
    pub fn set_latency(&self, operation: Operation, delay: Duration) {
        self.store.set_latency(operation, delay);
    }

    /// The Connect calls received, in arrival order.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.store.journal()
    }

    /// The journal restricted to one operation.
    pub fn calls(&self, operation: Operation) -> Vec<JournalEntry> {
        self.store
            .journal()
            .into_iter()
            .filter(|e| e.operation == operation.as_str())
            .collect()
    }

    pub fn clear_journal(&self) {
        self.store.clear_journal();
    }

    /// Calls and throttles per operation name in the journal, overall and per caller
    /// (`GET /_emulator/stats`).
    pub fn stats(&self) -> std::collections::BTreeMap<String, OperationStats> {
        self.store.stats()
    }

    /// Calls and throttles of `operation`, from `caller` (an access key id) or, with
    /// `None`, from everyone.
    pub fn counts(&self, operation: Operation, caller: Option<&str>) -> CallCounts {
        let stats = self.store.stats();
        let Some(op) = stats.get(operation.as_str()) else {
            return CallCounts::default();
        };
        match caller {
            None => op.total,
            Some(c) => op.callers.get(c).copied().unwrap_or_default(),
        }
    }

    /// Waits until `operation` has been called at least `count` times (answered or not) or
    /// `timeout` passes, and returns its calls so far. For tests whose client runs elsewhere.
    pub async fn wait_for_calls(
        &self,
        operation: Operation,
        count: usize,
        timeout: Duration,
    ) -> Vec<JournalEntry> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let calls = self.calls(operation);
            if calls.len() >= count || tokio::time::Instant::now() >= deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A user's current state (`instance` may be an id or ARN).
    pub fn user(&self, instance: &str, user_id: &str) -> Option<User> {
        self.store.user(instance, user_id)
    }

    /// Deletes a user, as `DeleteUser` does; its username can then be given to another.
    pub fn delete_user(&self, instance: &str, user_id: &str) -> Result<(), ApiError> {
        self.store.delete_user(instance, user_id)
    }

    /// All users of an instance, in creation order.
    pub fn users(&self, instance: &str) -> Option<Vec<User>> {
        self.store.users(instance)
    }

    pub fn instance(&self, instance: &str) -> Option<Instance> {
        self.store.instance(instance)
    }

    /// Restores the initial seed and clears faults, quotas, latency and the journal.
    pub fn reset(&self) {
        self.store.reset();
    }

    /// Stops accepting connections, closes the open ones and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
