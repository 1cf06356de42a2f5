//! The pipeline: `Pipeline` is what a container keeps between invocations (the ports,
//! the limits, the caches), and `Pipeline::run` runs one invocation (`run.rs`) as four
//! parts, each a struct that borrows only the ports it uses: the `Resolver`
//! (`usernames`, resolving users), the `Guard` (`guard`, the lease, watermarks and
//! supersession), the `Applier` (`apply`, reads, judgement and the update) and the
//! `Settler` (`settle`, dead letters, copies queued again, hand-backs and the reply).
//! They hand on typed values (`plan`): `Admitted` → `Targeted` → lanes of `Unit`s →
//! `Applied` → `Settled`, each record's `Entry` travelling with its change. The
//! invocation's one `Budget` (`budget`) holds every instant its parts must keep. Every
//! Connect call goes through `calls`, the one place that knows how a call is paced.
//!
//! May touch: `domain` (its types and ports) and `limiter`. Never the SDKs, `inbound` or
//! `outbound`: the adapters come in as the ports' implementations.

mod apply;
mod backpressure;
mod budget;
mod calls;
mod guard;
mod outcome;
mod plan;
mod run;
mod settle;
mod usernames;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::domain::document::Admission;
use crate::domain::identity::InstanceId;
use crate::domain::instance::IdentityManagement;
use crate::domain::ports::{DeadLetterSink, Directory, Watermarks};
use crate::domain::record::{Disposition, Record};
use outcome::Outcome;
use usernames::Usernames;

pub use calls::{MAX_ATTEMPTS, RateLimits};
pub use guard::NoWatermarks;
pub use plan::{Judgement, judge, order};

/// How the pipeline paces itself.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Retryable SQS records are handed back while their receive count is below this.
    pub max_receive_count: u32,
    /// Users worked on at once.
    pub concurrency: usize,
    /// Time kept free before the deadline to send the reply.
    pub deadline_margin: Duration,
    /// The longest one attempt of a Connect call may take; no attempt starts with less
    /// time than this left before the deadline less the margin.
    pub call_budget: Duration,
}

impl Settings {
    /// The longest a dead-letter send may take, its retries included: half the margin
    /// (the other half is kept for the reply), and never less than 100 ms, so that a
    /// margin of zero does not make every send time out.
    pub fn dead_letter_budget(&self) -> Duration {
        (self.deadline_margin / 2).max(Duration::from_millis(100))
    }
}

/// Counts per Connect operation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PerOperation {
    pub describe_instance: u32,
    pub search_users: u32,
    pub describe_user: u32,
    pub update_user_identity_info: u32,
    pub list_users: u32,
}

/// What one invocation did: how each record ended, in order, and what it cost.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    pub dispositions: Vec<Disposition>,
    /// The `messageId`s an SQS reply names in `batchItemFailures`, in order (settlement
    /// decides them; the reply only lists them).
    pub hand_back: Vec<String>,
    /// Connect calls made, each attempt counted (cached answers are no call).
    pub calls: PerOperation,
    /// Attempts Connect answered with a throttle.
    pub throttled: PerOperation,
    /// Time spent waiting for limiter tokens, summed over every attempt.
    pub limiter_wait: Duration,
    /// Records that ended `unchanged` because the staleness guard found every field
    /// they touched superseded.
    pub superseded: u32,
    /// Requests made to the watermark table (each lease try and each release).
    pub watermark_requests: u32,
    /// Writes to the fleet's shared update schedule in the same table (each token taken
    /// and each drop, lost races included).
    pub schedule_requests: u32,
    /// Users whose read-modify-write ran under a lease.
    pub guarded_users: u32,
}

/// What a container keeps between invocations: the ports, the limits and the caches.
pub struct Pipeline<D, S, W = NoWatermarks> {
    directory: D,
    sink: S,
    admission: Admission,
    settings: Settings,
    limits: RateLimits,
    /// The staleness guard's table; `None`: no guard.
    watermarks: Option<W>,
    usernames: Usernames,
    /// Each instance's identity management, asked for once per container.
    instances: InstanceCells,
    /// The leases kept after an update of unknown outcome, until they lapse.
    kept_leases: guard::KeptLeases,
    /// The container's wall clock.
    clock: Clock,
    /// Users holding a read while they wait for their update's turn.
    read_slots: backpressure::ReadSlots,
    /// Whether a deferred record of a standard queue is queued again as a fresh copy
    /// (and acknowledged) rather than handed back.
    requeue: bool,
}

type InstanceCells = Mutex<HashMap<InstanceId, Arc<OnceCell<IdentityManagement>>>>;

impl<D: Directory, S: DeadLetterSink> Pipeline<D, S> {
    pub fn new(
        directory: D,
        sink: S,
        admission: Admission,
        settings: Settings,
        limits: RateLimits,
    ) -> Self {
        let usernames = Usernames::new(limits.lists(), settings.concurrency);
        let read_slots =
            backpressure::ReadSlots::new(limits.update_ceiling(), settings.concurrency);
        Pipeline {
            directory,
            sink,
            admission,
            settings,
            limits,
            watermarks: None,
            usernames,
            instances: InstanceCells::default(),
            kept_leases: guard::KeptLeases::default(),
            clock: Clock::system(),
            read_slots,
            requeue: false,
        }
    }

    /// The same pipeline with the staleness guard keeping its watermarks in
    /// `watermarks` (`None`: no guard).
    pub fn with_watermarks<W: Watermarks>(self, watermarks: Option<W>) -> Pipeline<D, S, W> {
        Pipeline {
            directory: self.directory,
            sink: self.sink,
            admission: self.admission,
            settings: self.settings,
            limits: self.limits,
            watermarks,
            usernames: self.usernames,
            instances: self.instances,
            kept_leases: self.kept_leases,
            clock: self.clock,
            read_slots: self.read_slots,
            requeue: self.requeue,
        }
    }
}

impl<D: Directory, S: DeadLetterSink, W: Watermarks> Pipeline<D, S, W> {
    /// The same pipeline reading the time of day on `clock` (the system clock unless
    /// set): leases, dead letters, admission and the fleet's schedule.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.limits.set_clock(&clock);
        self.clock = clock;
        self
    }

    /// The wall clock the pipeline reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The same pipeline, queueing a deferred record of a standard queue again as a
    /// fresh copy (and acknowledging it) instead of handing it back, so that a deferral
    /// spends none of the record's receives (SPEC §2.4, §3). A copy that cannot be sent
    /// leaves the record handed back.
    #[must_use]
    pub fn requeue_deferrals(mut self, on: bool) -> Self {
        self.requeue = on;
        self
    }

    /// Handles the records of one invocation: how each ended, in order, and what the
    /// invocation cost in Connect calls.
    pub async fn run(&self, records: &[Record], fifo: bool, deadline: Instant) -> RunReport {
        run::run(self, records, fifo, deadline).await
    }
}
