//! The simulated world's shared state: time, the seeded randomness every choice is
//! drawn from, the faults a seed turned on, what the run recorded, and the invariants'
//! findings.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use connect_identity_sync::clock::WallClock;
use tokio::time::Instant;

/// What every wall clock of the run reads at its start (plus its offset).
pub fn epoch() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
        .expect("a fixed time")
        .with_timezone(&Utc)
}

/// Which faults a seed turned on, and how often each strikes (swarm testing: each run
/// has its own mix, so a fault that only shows when others are off is still met).
#[derive(Debug, Clone)]
pub struct Faults {
    pub containers: usize,
    pub users: usize,
    pub changes: usize,
    /// Per Connect attempt: throttled although the bucket had a token, a 5xx, a
    /// request that lands but whose reply is lost, a slow answer.
    pub connect_throttle: f64,
    pub connect_5xx: f64,
    pub connect_unknown: f64,
    pub connect_slow: f64,
    /// Per table request (each attempt of the SDK): throttled, failing, the write done
    /// but its reply lost, slow.
    pub table_throttle: f64,
    pub table_fail: f64,
    pub table_lost: f64,
    pub table_slow: f64,
    /// Per receive: SQS delivers the message again while it is in flight.
    pub duplicate: f64,
    /// Per invocation: the container is killed at a random point of it.
    pub kill: f64,
    /// The containers' clocks differ by up to this much (each its own offset).
    pub clock_skew_ms: i64,
    /// Once in the run, the fleet's stored schedule is written from a clock an hour ahead.
    pub far_ahead: bool,
    /// A slow spell of the table: from this long into the run, for 20 s, every request
    /// takes from half a second to two attempt timeouts.
    pub table_brownout: Option<Duration>,
    /// Another caller's updates a second on the account's quota (0: none).
    pub other_caller: f64,
    /// Every change queued at once at the start (an identity provider's initial cycle),
    /// its `OccurredAt` up to ten minutes before, instead of over the first minute.
    pub backlog: bool,
    /// Per copy of a deferred record (its `SendMessage` to the source queue): refused
    /// (not taken), or taken and answered late (a quarter second to three: after the
    /// copy's budget when the deferral came late in its invocation).
    pub copy_refused: f64,
    pub copy_late: f64,
    /// The share of good changes that carry the values the user already has (an
    /// identity provider's first cycle: most users unchanged).
    pub unchanged: f64,
}

/// Which fleets a run of seeds covers (`SIM_SCALE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// Most seeds small (one to four containers, changes over a minute), one in
    /// `LARGE_ONE_IN` a large fleet under a backlog: what `make test` and `make
    /// simulate` run.
    Mixed,
    /// Every seed small.
    Small,
    /// Every seed a large fleet under a backlog.
    Large,
}

/// In a mixed run, one seed in this many is a large fleet under a backlog.
pub const LARGE_ONE_IN: u64 = 12;

impl Scale {
    pub fn from_env() -> Self {
        match std::env::var("SIM_SCALE").as_deref().map(str::trim) {
            Ok("small") => Scale::Small,
            Ok("large") => Scale::Large,
            _ => Scale::Mixed,
        }
    }

    /// Whether `seed` runs a large fleet under a backlog. Drawn from a generator of its
    /// own, so that a small seed's run is the same whatever the mode.
    pub fn large(self, seed: u64) -> bool {
        match self {
            Scale::Small => false,
            Scale::Large => true,
            Scale::Mixed => scale_rng(seed).u64(0..LARGE_ONE_IN) == 0,
        }
    }
}

fn scale_rng(seed: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed ^ 0x5ca1_ab1e_f1ee_7000)
}

impl Faults {
    pub fn draw(rng: &mut fastrand::Rng) -> Self {
        fn some(rng: &mut fastrand::Rng, max: f64) -> f64 {
            if rng.bool() { rng.f64() * max } else { 0.0 }
        }
        let connect_throttle = some(rng, 0.05);
        let connect_5xx = some(rng, 0.05);
        let connect_unknown = some(rng, 0.05);
        let connect_slow = some(rng, 0.05);
        // One run in four, the table never misbehaves (the quota's bounds are checked
        // only then: a failing table leaves each container to its own share).
        let calm = rng.u8(0..4) == 0;
        let mut table = |max: f64| {
            let p = some(rng, max);
            if calm { 0.0 } else { p }
        };
        let table_throttle = table(0.05);
        let table_fail = table(0.05);
        let table_lost = table(0.05);
        let table_slow = table(0.10);
        let duplicate = some(rng, 0.05);
        let kill = some(rng, 0.10);
        Faults {
            containers: rng.usize(1..=4),
            users: rng.usize(1..=10),
            changes: rng.usize(10..=150),
            connect_throttle,
            connect_5xx,
            connect_unknown,
            connect_slow,
            table_throttle,
            table_fail,
            table_lost,
            table_slow,
            duplicate,
            kill,
            clock_skew_ms: if rng.bool() { rng.i64(0..=800) } else { 0 },
            far_ahead: !calm && rng.u8(0..4) == 0,
            table_brownout: (!calm && rng.u8(0..3) == 0)
                .then(|| Duration::from_secs(rng.u64(10..=60))),
            other_caller: if rng.bool() { 1.2 } else { 0.0 },
            backlog: false,
            copy_refused: 0.0,
            copy_late: 0.0,
            unchanged: 0.0,
        }
    }

    /// No fault of any kind: `containers` containers under a backlog of `changes`
    /// changes to `users` users queued at once, with another caller at `other_caller`
    /// updates a second (0: none). What the fleet makes of the free quota.
    pub fn calm(containers: usize, changes: usize, users: usize, other_caller: f64) -> Self {
        Faults {
            containers,
            users,
            changes,
            connect_throttle: 0.0,
            connect_5xx: 0.0,
            connect_unknown: 0.0,
            connect_slow: 0.0,
            table_throttle: 0.0,
            table_fail: 0.0,
            table_lost: 0.0,
            table_slow: 0.0,
            duplicate: 0.0,
            kill: 0.0,
            clock_skew_ms: 0,
            far_ahead: false,
            table_brownout: None,
            other_caller,
            backlog: true,
            copy_refused: 0.0,
            copy_late: 0.0,
            unchanged: 0.0,
        }
    }

    /// A large fleet under a backlog: from five to the template's fifty containers
    /// (each at the template's shares, quota/containers), and 150 to 500
    /// changes queued at once, on enough users that draining them takes many visibility
    /// timeouts at the quota (with another caller or not, and the seed's faults). Drawn
    /// after the small run's faults, from the seed's own second generator.
    pub fn scale_up(mut self, seed: u64) -> Self {
        let mut rng = scale_rng(seed);
        // Past the one draw that chose the mode.
        rng.u64(0..LARGE_ONE_IN);
        self.containers = if rng.bool() {
            [5, 10, 25, 50][rng.usize(0..4)]
        } else {
            rng.usize(5..=50)
        };
        self.changes = rng.usize(150..=500);
        // `SIM_BACKLOG=N`: a backlog of N changes instead (10,000: an initial cycle).
        if let Some(n) = std::env::var("SIM_BACKLOG")
            .ok()
            .and_then(|v| v.trim().parse().ok())
        {
            self.changes = n;
        }
        self.users = (self.changes / rng.usize(2..=6)).max(20);
        self.backlog = true;
        self
    }

    /// Whether the table ever misbehaves in this run.
    pub fn table_faulty(&self) -> bool {
        self.table_throttle + self.table_fail + self.table_lost + self.table_slow > 0.0
            || self.far_ahead
            || self.table_brownout.is_some()
    }
}

/// An invariant broken, by kind (stable names, so runs can be compared).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Violation {
    pub kind: &'static str,
    pub detail: String,
}

/// One invocation of one container: (incarnation, invocation number).
pub type InvocationId = (u64, u64);

pub struct World {
    pub start: Instant,
    pub faults: Faults,
    rng: Mutex<fastrand::Rng>,
    /// The generator of the copies' faults (`copy_fault`).
    copies: Mutex<fastrand::Rng>,
    /// Every event of note, in order, with its simulated time: hashed to prove a
    /// replay identical, and its tail printed with a failure.
    trace: Mutex<Vec<String>>,
    pub violations: Mutex<Vec<Violation>>,
    /// Invocations in which a fault struck a request for a user (the user's id).
    pub faulted: Mutex<BTreeSet<(InvocationId, String)>>,
    /// Each incarnation's clock offset, in milliseconds.
    pub offsets: Mutex<BTreeMap<u64, i64>>,
    /// Print each event as it happens (a replay, beside the function's own log lines).
    pub echo: bool,
}

impl World {
    pub fn new(seed: u64, large: bool, echo: bool) -> Self {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut faults = Faults::draw(&mut rng);
        // The copies' faults from a generator of their own, so that every other draw of
        // a seed is what it was before they were simulated.
        let mut copies = fastrand::Rng::with_seed(seed ^ 0xc0b1_e5f0_0000_0001);
        for p in [&mut faults.copy_refused, &mut faults.copy_late] {
            *p = if copies.bool() {
                copies.f64() * 0.3
            } else {
                0.0
            };
        }
        if large {
            faults = faults.scale_up(seed);
        }
        Self::with_faults(faults, rng, copies, echo)
    }

    /// A run of `faults` (every other draw from `seed`).
    pub fn calm(seed: u64, faults: Faults) -> Self {
        let copies = fastrand::Rng::with_seed(seed ^ 0xc0b1_e5f0_0000_0001);
        Self::with_faults(faults, fastrand::Rng::with_seed(seed), copies, false)
    }

    fn with_faults(faults: Faults, rng: fastrand::Rng, copies: fastrand::Rng, echo: bool) -> Self {
        let copies = Mutex::new(copies);
        World {
            start: Instant::now(),
            faults,
            rng: Mutex::new(rng),
            copies,
            trace: Mutex::default(),
            violations: Mutex::default(),
            faulted: Mutex::default(),
            offsets: Mutex::default(),
            echo,
        }
    }

    /// Simulated time since the start.
    pub fn elapsed(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    /// The true time of day.
    pub fn true_now(&self) -> DateTime<Utc> {
        epoch() + TimeDelta::from_std(self.elapsed()).expect("a short run")
    }

    /// Draws with the run's one generator.
    pub fn rng<T>(&self, f: impl FnOnce(&mut fastrand::Rng) -> T) -> T {
        f(&mut self.rng.lock().expect("rng"))
    }

    pub fn chance(&self, p: f64) -> bool {
        p > 0.0 && self.rng(|r| r.f64()) < p
    }

    /// Whether a fault of probability `p` strikes now (faults stop after a while, so
    /// that the run can show the fleet recovers).
    pub fn fault(&self, p: f64) -> bool {
        crate::fleet::faults_on(self.elapsed()) && self.chance(p)
    }

    /// Whether a fault of a copy, of probability `p`, strikes now: drawn from the
    /// copies' own generator.
    pub fn copy_fault(&self, p: f64) -> bool {
        crate::fleet::faults_on(self.elapsed())
            && p > 0.0
            && self.copies.lock().expect("copies").f64() < p
    }

    /// A duration of a copy's fault, drawn uniformly from `[lo, hi]` with the copies'
    /// own generator.
    pub fn copy_between(&self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_micros() as u64, hi.as_micros() as u64);
        Duration::from_micros(self.copies.lock().expect("copies").u64(lo..=hi.max(lo)))
    }

    /// A duration drawn uniformly from `[lo, hi]`.
    pub fn between(&self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_micros() as u64, hi.as_micros() as u64);
        Duration::from_micros(if hi <= lo {
            lo
        } else {
            self.rng(|r| r.u64(lo..=hi))
        })
    }

    pub fn note(&self, event: impl AsRef<str>) {
        let at = self.elapsed().as_micros();
        let line = format!("{at:>12} {}", event.as_ref());
        if self.echo {
            eprintln!("{line}");
        }
        self.trace.lock().expect("trace").push(line);
    }

    /// A detail only a replay prints (kept out of the trace of other runs).
    pub fn detail(&self, event: impl FnOnce() -> String) {
        if self.echo {
            eprintln!("{:>12}   {}", self.elapsed().as_micros(), event());
        }
    }

    pub fn violate(&self, kind: &'static str, detail: impl Into<String>) {
        let detail = detail.into();
        self.note(format!("VIOLATION {kind}: {detail}"));
        self.violations
            .lock()
            .expect("violations")
            .push(Violation { kind, detail });
    }

    /// A fault struck a request for `user` in `invocation` (`""`: for the instance, so for
    /// every user of the invocation).
    pub fn fault_for(&self, invocation: InvocationId, user: &str) {
        self.faulted
            .lock()
            .expect("faulted")
            .insert((invocation, user.to_owned()));
    }

    /// A digest of the whole trace: two runs of one seed must agree on it.
    pub fn digest(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.trace.lock().expect("trace").hash(&mut h);
        h.finish()
    }

    /// The true instant a wall-clock time of incarnation `incarnation` stands for.
    pub fn true_time_of(&self, incarnation: u64, wall: DateTime<Utc>) -> DateTime<Utc> {
        let offset = self
            .offsets
            .lock()
            .expect("offsets")
            .get(&incarnation)
            .copied()
            .unwrap_or(0);
        wall - TimeDelta::milliseconds(offset)
    }
}

/// A container's wall clock: the true time plus its offset.
pub struct OffsetClock {
    pub start: Instant,
    pub offset_ms: i64,
}

impl WallClock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        epoch()
            + TimeDelta::from_std(Instant::now().saturating_duration_since(self.start))
                .expect("a short run")
            + TimeDelta::milliseconds(self.offset_ms)
    }
}
