//! A deterministic simulation of the fleet: the library's own handler and pipeline,
//! unchanged, in several containers against in-memory Connect, DynamoDB and SQS, with
//! tokio's clock paused and every container's wall clock injected, so minutes of
//! simulated time take milliseconds and one seed decides every choice: the mix of
//! faults, the changes, each fault's moment, each kill, each clock's offset.
//!
//! `SIM_SEEDS=N` runs seeds 1..=N (`SIM_FIRST` moves the start); `SIM_SEED=S` replays
//! one seed and prints its trace. A failing seed prints itself and the command that
//! replays it. `make simulate SEEDS=N` runs N seeds.

mod connect;
mod fleet;
mod invariants;
mod table;
mod world;

use std::collections::BTreeMap;
use std::time::Instant as WallInstant;

use world::{Scale, Violation};

/// Seeds CI runs (`make test`): about 20 s on two busy cores.
const CI_SEEDS: u64 = 200;

struct Outcome {
    large: bool,
    /// The run's shape: containers, changes, users, another caller.
    shape: String,
    violations: Vec<Violation>,
    digest: u64,
    invocations: u64,
    simulated: std::time::Duration,
}

/// A runtime of one thread on tokio's paused clock: simulated time passes as fast as
/// the run can go.
fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime")
}

fn simulate(seed: u64, scale: Scale, whole_trace: bool) -> Outcome {
    let large = scale.large(seed);
    paused_runtime().block_on(async move {
        let ran = fleet::run(seed, large, whole_trace).await;
        invariants::check(&ran);
        let w = &ran.world;
        let mut violations = w.violations.lock().expect("violations").clone();
        violations.sort();
        violations.dedup();
        let f = &w.faults;
        let shape = format!(
            "{} containers, {} changes on {} users{}{}",
            f.containers,
            f.changes,
            f.users,
            if f.backlog { " queued at once" } else { "" },
            if f.other_caller > 0.0 {
                ", another caller"
            } else {
                ""
            }
        );
        Outcome {
            large,
            shape,
            violations,
            digest: w.digest(),
            invocations: ran.invocations,
            simulated: w.elapsed(),
        }
    })
}

fn env(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    v.strip_prefix("0x")
        .map_or_else(|| v.parse().ok(), |hex| u64::from_str_radix(hex, 16).ok())
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env("SIM_SEED") {
        return vec![seed];
    }
    let first = env("SIM_FIRST").unwrap_or(1);
    let n = env("SIM_SEEDS").unwrap_or(CI_SEEDS);
    (first..first + n).collect()
}

#[test]
fn every_seeded_run_of_the_fleet_keeps_the_invariants() {
    let seeds = seeds();
    let replay = seeds.len() == 1;
    if replay {
        // The function's own log lines, between the simulation's events.
        use lambda_runtime::tracing::subscriber;
        let _ = subscriber::fmt()
            .with_writer(std::io::stderr)
            .without_time()
            .with_target(false)
            .try_init();
    }
    let scale = Scale::from_env();
    let mut failed: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut by_kind: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    // Per mode (small, large): seeds, wall time, invocations, simulated time.
    let mut modes = [(0u64, 0.0f64, 0u64, std::time::Duration::ZERO); 2];
    let started = WallInstant::now();
    for &seed in &seeds {
        let one = WallInstant::now();
        let outcome = simulate(seed, scale, replay);
        let mode = &mut modes[usize::from(outcome.large)];
        mode.0 += 1;
        mode.1 += one.elapsed().as_secs_f64();
        mode.2 += outcome.invocations;
        mode.3 += outcome.simulated;
        if seeds.len() <= 5 {
            eprintln!(
                "seed {seed} ({}): {} invocations, {:.0} simulated minutes, {} violations",
                outcome.shape,
                outcome.invocations,
                outcome.simulated.as_secs_f64() / 60.0,
                outcome.violations.len()
            );
        }
        if !outcome.violations.is_empty() {
            let mut kinds: Vec<_> = outcome.violations.iter().map(|v| v.kind).collect();
            kinds.dedup();
            for k in kinds {
                by_kind.entry(k).or_default().push(seed);
            }
            failed.insert(seed, outcome);
        }
    }
    let took = started.elapsed();
    eprintln!(
        "simulation ({scale:?}): {} seeds in {:.1} s ({:.1} seeds/s), {} failed",
        seeds.len(),
        took.as_secs_f64(),
        seeds.len() as f64 / took.as_secs_f64(),
        failed.len()
    );
    for (name, (n, secs, invocations, simulated)) in ["small", "large"].iter().zip(modes) {
        if n == 0 {
            continue;
        }
        let failed = failed
            .values()
            .filter(|o| o.large == (*name == "large"))
            .count();
        eprintln!(
            "  {name}: {n} seeds in {secs:.1} s ({:.1} seeds/s), {failed} failed, {invocations} invocations, {:.0} simulated minutes",
            n as f64 / secs,
            simulated.as_secs_f64() / 60.0
        );
    }
    for (kind, seeds) in &by_kind {
        eprintln!(
            "  {kind}: {} seeds: {:?}",
            seeds.len(),
            &seeds[..seeds.len().min(20)]
        );
    }
    for (seed, outcome) in failed.iter().take(5) {
        eprintln!("\nseed {seed} ({}) failed:", outcome.shape);
        for v in outcome.violations.iter().take(10) {
            eprintln!("  {}: {}", v.kind, v.detail);
        }
        let mode = match scale {
            Scale::Mixed => String::new(),
            Scale::Small => "SIM_SCALE=small ".to_owned(),
            Scale::Large => "SIM_SCALE=large ".to_owned(),
        };
        eprintln!(
            "  replay: {mode}SIM_SEED={seed} cargo test --test simulation -- --nocapture   (or {mode}make simulate SEED={seed})"
        );
    }
    assert!(
        failed.is_empty(),
        "{} of {} seeds broke an invariant (seeds {:?})",
        failed.len(),
        seeds.len(),
        failed.keys().take(20).collect::<Vec<_>>()
    );
}

#[test]
fn a_seed_replays_exactly() {
    let scale = Scale::from_env();
    // Four small seeds and a large fleet under a backlog (its containers started one by
    // one, its copies queued again by the thousand).
    let seeds = env("SIM_SEED").map_or_else(
        || {
            vec![
                (3, Scale::Small),
                (7, Scale::Small),
                (11, Scale::Small),
                (19, Scale::Small),
                (4, Scale::Large),
            ]
        },
        |s| vec![(s, scale)],
    );
    for (seed, scale) in seeds {
        let (a, b) = (simulate(seed, scale, false), simulate(seed, scale, false));
        assert!(a.invocations > 0, "seed {seed}: the run did nothing");
        assert_eq!(a.digest, b.digest, "two runs of seed {seed} differ");
        assert_eq!(a.violations, b.violations, "seed {seed}");
    }
}

/// What a fleet made of the free quota under a backlog, faults off: from two to the
/// template's fifty containers, alone and with another caller at 1.2 of the 2 updates a
/// second, over `SIM_CALM_SEEDS` seeds each (default 1). Every invariant holds in each
/// run; the quota use (updates landed a second, from the fleet's first call to its last
/// landed update, over what the other caller leaves free) and the throttled shares are
/// printed, lowest and mean over the seeds, for `make simulate` and BENCHMARKS.md.
#[test]
fn calm_fleets_of_two_to_fifty_containers_under_a_backlog() {
    calm_fleets("a backlog", 0.0);
}

/// The same fleets under an identity provider's first cycle: nine in ten good changes
/// carry the values their users already have, so that most reads find nothing to
/// update and the backlog drains at the read quota's pace. Every invariant holds; the
/// time the fleet took is printed beside the figures above.
#[test]
fn calm_fleets_under_a_first_cycle_of_mostly_unchanged_users() {
    calm_fleets("a first cycle, nine in ten unchanged,", 0.9);
}

/// The calm fleets' runs: `unchanged` is the share of good changes that leave their
/// user as it is.
fn calm_fleets(what: &str, unchanged: f64) {
    let seeds = env("SIM_CALM_SEEDS").unwrap_or(1).max(1);
    let changes = usize::try_from(env("SIM_CALM_CHANGES").unwrap_or(600)).unwrap_or(600);
    let mut failed = Vec::new();
    eprintln!(
        "calm fleets under {what} {changes} changes to {} users, {seeds} seeds each (simulated): \
         quota use lowest / mean; updates throttled, the containers' and the other caller's, highest; \
         means of receives a change (its copies' included), reads an update and the fleet's time \
         from its first call to its last",
        changes / 3
    );
    for other_caller in [0.0, 1.2] {
        for containers in [2, 5, 10, 25, 50] {
            let mut runs = Vec::new();
            for seed in 1..=seeds {
                let mut faults =
                    world::Faults::calm(containers, changes, changes / 3, other_caller);
                faults.unchanged = unchanged;
                let run = paused_runtime().block_on(async move {
                    let ran = fleet::run_world(world::World::calm(seed, faults)).await;
                    invariants::check(&ran);
                    CalmRun::of(&ran, other_caller)
                });
                for v in run.violations.iter().take(5) {
                    eprintln!("    seed {seed}: {}: {}", v.kind, v.detail);
                }
                if !run.violations.is_empty() {
                    failed.push((containers, other_caller, seed));
                }
                runs.push(run);
            }
            let n = runs.len() as f64;
            let mean = |f: fn(&CalmRun) -> f64| runs.iter().map(f).sum::<f64>() / n;
            let highest = |f: fn(&CalmRun) -> f64| runs.iter().map(f).fold(0.0, f64::max);
            let lowest = runs
                .iter()
                .map(|r| r.quota_use)
                .fold(f64::INFINITY, f64::min);
            eprintln!(
                "  {containers:>2} containers, {}: quota use {lowest:.2} / {:.2}; throttled {:.1} % / {}; \
                 receives a change {:.2}, `DescribeUser` an update {:.2}, {:.0} s",
                if other_caller > 0.0 {
                    "another caller"
                } else {
                    "alone"
                },
                mean(|r| r.quota_use),
                highest(|r| r.fleet_throttled),
                if other_caller > 0.0 {
                    format!("{:.1} %", highest(|r| r.other_throttled))
                } else {
                    "—".to_owned()
                },
                mean(|r| r.receives),
                mean(|r| r.reads),
                mean(|r| r.seconds),
            );
        }
    }
    assert!(failed.is_empty(), "invariants broken in {failed:?}");
}

/// What one calm run came to.
struct CalmRun {
    violations: Vec<world::Violation>,
    /// Updates landed a second over what the other caller leaves free.
    quota_use: f64,
    /// Updates throttled, in %: the fleet's and the other caller's.
    fleet_throttled: f64,
    other_throttled: f64,
    /// Deliveries a change, its copies' included.
    receives: f64,
    /// `DescribeUser` calls an update landed.
    reads: f64,
    /// From the fleet's first call to its last.
    seconds: f64,
}

impl CalmRun {
    fn of(ran: &fleet::Ran, other_caller: f64) -> Self {
        let c = ran.connect.state.lock().expect("connect");
        let span = |last: Option<tokio::time::Instant>| match (c.first_call, last) {
            (Some(first), Some(last)) => last.saturating_duration_since(first).as_secs_f64(),
            _ => 0.0,
        };
        let quota_use = c.landed as f64 / span(c.last_landed).max(1e-9) / (2.0 - other_caller);
        let share = |u: &connect::Usage| 100.0 * u.share(Some(connect::UPDATE)).1;
        let deliveries: usize = ran
            .queue
            .messages
            .lock()
            .expect("queue")
            .iter()
            .map(|m| m.deliveries.len())
            .sum();
        CalmRun {
            violations: ran.world.violations.lock().expect("violations").clone(),
            quota_use,
            fleet_throttled: share(&c.fleet),
            other_throttled: share(&c.other),
            receives: deliveries as f64 / ran.changes.len().max(1) as f64,
            reads: c.fleet.calls[2] as f64 / c.landed.max(1) as f64,
            seconds: span(c.last_call),
        }
    }
}
