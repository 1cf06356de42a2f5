//! Amazon Connect in memory: users with a version that every landed update moves on,
//! the account's quotas as one token bucket per operation shared by every caller, and
//! faults drawn per attempt: throttles, 5xx, slow answers, and requests that land but
//! whose reply is lost (the landing runs as its own task, so it happens even when the
//! caller has given up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{InstanceId, UserId};
use connect_identity_sync::domain::instance::{IdentityManagement, UpdatePlan};
use connect_identity_sync::domain::ports::{CallFailure, Directory, Reach, UserPage, UserRecord};
use tokio::time::{Instant, sleep, sleep_until};

use crate::table::Table;
use crate::world::{InvocationId, World};

/// The operations, and their account quotas: (rate a second, burst).
pub const OPS: [(&str, f64, f64); 5] = [
    ("DescribeInstance", 2.0, 5.0),
    ("SearchUsers", 2.0, 5.0),
    ("DescribeUser", 10.0, 15.0),
    ("UpdateUserIdentityInfo", 2.0, 5.0),
    ("ListUsers", 10.0, 15.0),
];
pub const UPDATE: usize = 3;

/// The longest one attempt may take (`CONNECT_ATTEMPT_TIMEOUT_MS`'s default).
pub const ATTEMPT: Duration = Duration::from_secs(3);

/// A request whose reply is lost lands at most this long after its attempt timed out:
/// the model's bound on how late a request can reach Connect. The kept lease (the
/// deadline + 2 s) is meant to outlast it.
pub const LATE_LANDING: Duration = Duration::from_secs(1);

struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    burst: f64,
}

impl Bucket {
    fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct SimUser {
    pub info: IdentityInfo,
    pub version: u64,
}

/// Calls and quota throttles (the bucket was empty), per operation.
#[derive(Default, Clone, Copy, Debug)]
pub struct Usage {
    pub calls: [u64; 5],
    pub throttled: [u64; 5],
}

impl Usage {
    /// The calls of `op` (`None`: of every operation), and the share of them throttled.
    pub fn share(&self, op: Option<usize>) -> (u64, f64) {
        let (calls, throttled) = match op {
            Some(op) => (self.calls[op], self.throttled[op]),
            None => (self.calls.iter().sum(), self.throttled.iter().sum()),
        };
        (calls, throttled as f64 / calls.max(1) as f64)
    }
}

#[derive(Default)]
pub struct ConnectState {
    pub users: BTreeMap<String, SimUser>,
    buckets: Vec<Bucket>,
    /// The version each incarnation last read of each user.
    reads: BTreeMap<(u64, String), u64>,
    pub fleet: Usage,
    pub other: Usage,
    /// The fleet's first call and its last, and its updates landed: how many, the
    /// last one when.
    pub first_call: Option<Instant>,
    pub last_call: Option<Instant>,
    pub landed: u64,
    pub last_landed: Option<Instant>,
}

pub struct Connect {
    pub state: Mutex<ConnectState>,
}

impl Connect {
    pub fn new(users: &[(String, IdentityInfo)]) -> Self {
        let now = Instant::now();
        let state = ConnectState {
            users: users
                .iter()
                .map(|(id, info)| {
                    (
                        id.clone(),
                        SimUser {
                            info: info.clone(),
                            version: 0,
                        },
                    )
                })
                .collect(),
            buckets: OPS
                .iter()
                .map(|(_, rate, burst)| Bucket {
                    tokens: *burst,
                    at: now,
                    rate: *rate,
                    burst: *burst,
                })
                .collect(),
            ..ConnectState::default()
        };
        Connect {
            state: Mutex::new(state),
        }
    }

    /// One request of another caller on the account's quota: whether it was taken.
    pub fn other_caller_update(&self) -> bool {
        let mut s = self.state.lock().expect("connect");
        s.other.calls[UPDATE] += 1;
        let taken = s.buckets[UPDATE].take();
        if !taken {
            s.other.throttled[UPDATE] += 1;
        }
        taken
    }
}

/// One container's view of Connect: the shared state, and who is calling.
pub struct SimDirectory {
    pub world: Arc<World>,
    pub connect: Arc<Connect>,
    pub table: Arc<Table>,
    pub incarnation: u64,
    /// The container's current invocation number.
    pub invocation: Arc<AtomicU64>,
}

/// What an attempt will do.
enum Fate {
    Fail(ErrorClass, Duration),
    /// Answered after the latency; a write lands after `lands` (at most the latency).
    Answer {
        latency: Duration,
        lands: Duration,
    },
    /// The request lands after `lands`; the reply never comes.
    Lost {
        lands: Duration,
    },
}

impl SimDirectory {
    fn invocation_id(&self) -> InvocationId {
        (self.incarnation, self.invocation.load(Ordering::Relaxed))
    }

    fn fate(&self, op: usize, user: &str) -> Fate {
        let fate = self.draw(op, user);
        self.world.detail(|| {
            let what = match &fate {
                Fate::Fail(class, _) => class.to_string(),
                Fate::Answer { latency, lands } => {
                    format!("answered in {latency:?}, lands at {lands:?}")
                }
                Fate::Lost { lands } => format!("reply lost, lands at {lands:?}"),
            };
            format!(
                "{} by i{} for {user:?}: {what}",
                OPS[op].0, self.incarnation
            )
        });
        fate
    }

    fn draw(&self, op: usize, user: &str) -> Fate {
        let w = &self.world;
        let f = &w.faults;
        let quick = w.between(Duration::from_millis(5), Duration::from_millis(40));
        {
            let mut s = self.connect.state.lock().expect("connect");
            s.fleet.calls[op] += 1;
            s.first_call.get_or_insert_with(Instant::now);
            s.last_call = Some(Instant::now());
            if !s.buckets[op].take() {
                s.fleet.throttled[op] += 1;
                drop(s);
                // The quota's throttle is the record's own retryable failure (SPEC §3).
                w.fault_for(self.invocation_id(), user);
                return Fate::Fail(ErrorClass::ThrottlingException, quick);
            }
        }
        let fault = |class| {
            w.fault_for(self.invocation_id(), user);
            Fate::Fail(class, quick)
        };
        if w.fault(f.connect_throttle) {
            return fault(ErrorClass::ThrottlingException);
        }
        if w.fault(f.connect_5xx) {
            return fault(ErrorClass::InternalServiceException);
        }
        if w.fault(f.connect_unknown) {
            w.fault_for(self.invocation_id(), user);
            return Fate::Lost {
                lands: w.between(Duration::ZERO, ATTEMPT + LATE_LANDING),
            };
        }
        let latency = if w.fault(f.connect_slow) {
            w.fault_for(self.invocation_id(), user);
            w.between(ATTEMPT / 2, ATTEMPT * 2)
        } else {
            w.between(Duration::from_millis(10), Duration::from_millis(80))
        };
        // A write lands before its answer is sent.
        let lands = w.between(
            Duration::ZERO,
            latency.mul_f64(0.9).min(ATTEMPT + LATE_LANDING),
        );
        Fate::Answer { latency, lands }
    }

    async fn read<T>(
        &self,
        op: usize,
        user: &str,
        read: impl FnOnce() -> T,
    ) -> Result<T, CallFailure> {
        match self.fate(op, user) {
            Fate::Fail(class, after) => {
                sleep(after).await;
                Err(failure(op, class))
            }
            Fate::Lost { .. } => {
                // No reply: the caller's attempt timeout ends the wait.
                sleep(Duration::from_secs(3600)).await;
                Err(failure(op, ErrorClass::UnknownError).with_reach(Reach::Unknown))
            }
            Fate::Answer { latency, .. } => {
                sleep(latency).await;
                Ok(read())
            }
        }
    }
}

fn failure(op: usize, class: ErrorClass) -> CallFailure {
    CallFailure::new(class, format!("Connect {} failed with {class}", OPS[op].0))
}

impl Directory for SimDirectory {
    async fn identity_management(
        &self,
        _instance: &InstanceId,
    ) -> Result<IdentityManagement, CallFailure> {
        self.read(0, "", || IdentityManagement::ConnectManaged)
            .await
    }

    async fn find_user(&self, _: &InstanceId, _: &str) -> Result<UserId, CallFailure> {
        self.read(1, "", || ()).await?;
        Err(failure(1, ErrorClass::ResourceNotFoundException))
    }

    async fn list_users_page(
        &self,
        _: &InstanceId,
        _: Option<&str>,
    ) -> Result<UserPage, CallFailure> {
        self.read(4, "", UserPage::default).await
    }

    async fn describe_user(
        &self,
        _instance: &InstanceId,
        user: &UserId,
    ) -> Result<UserRecord, CallFailure> {
        let id = user.as_str();
        let found = self
            .read(2, id, || {
                let mut s = self.connect.state.lock().expect("connect");
                let found = s.users.get(id).map(|u| (u.info.clone(), u.version));
                if let Some((_, version)) = found {
                    s.reads.insert((self.incarnation, id.to_owned()), version);
                }
                found.map(|(info, _)| info)
            })
            .await?;
        match found {
            Some(info) => Ok(UserRecord {
                info,
                security_profile_ids: vec!["sp-agent".to_owned()],
                username: None,
            }),
            None => Err(failure(2, ErrorClass::ResourceNotFoundException)),
        }
    }

    async fn update_identity(
        &self,
        instance: &InstanceId,
        user: &UserId,
        plan: &UpdatePlan,
    ) -> Result<(), CallFailure> {
        let id = user.as_str().to_owned();
        let w = &self.world;
        // Sent now: the sender must hold the user's lease, and it must not have lapsed.
        if let Some(problem) =
            self.table
                .lease_problem(instance, user, self.incarnation, w.true_now())
        {
            w.violate(
                "update-without-lease",
                format!(
                    "incarnation {} sent an update of {id}: {problem}",
                    self.incarnation
                ),
            );
        }
        let fate = self.fate(UPDATE, &id);
        let read = self
            .connect
            .state
            .lock()
            .expect("connect")
            .reads
            .get(&(self.incarnation, id.clone()))
            .copied();
        let landing = |lands: Duration| {
            let connect = Arc::clone(&self.connect);
            let world = Arc::clone(&self.world);
            let plan = plan.clone();
            let id = id.clone();
            let incarnation = self.incarnation;
            let at = Instant::now() + lands;
            tokio::spawn(async move {
                sleep_until(at).await;
                let mut s = connect.state.lock().expect("connect");
                let Some(u) = s.users.get_mut(&id) else {
                    return;
                };
                if read != Some(u.version) {
                    world.violate(
                        "update-over-unread",
                        format!(
                            "an update of {id} by incarnation {incarnation} read at version {read:?} landed on version {}",
                            u.version
                        ),
                    );
                }
                let mut info = plan.info.clone();
                if !plan.send_email {
                    info.email = u.info.email.clone();
                }
                u.info = info;
                u.version += 1;
                world.note(format!("update of {id} landed: version {}", u.version));
                s.landed += 1;
                s.last_landed = Some(Instant::now());
            });
        };
        match fate {
            Fate::Fail(class, after) => {
                sleep(after).await;
                Err(failure(UPDATE, class))
            }
            Fate::Lost { lands } => {
                landing(lands);
                sleep(Duration::from_secs(3600)).await;
                Err(failure(UPDATE, ErrorClass::UnknownError).with_reach(Reach::Unknown))
            }
            Fate::Answer { latency, lands } => {
                landing(lands);
                sleep(latency).await;
                Ok(())
            }
        }
    }
}
