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

use world::Violation;

/// Seeds CI runs (`make test`): about 20 s on two busy cores.
const CI_SEEDS: u64 = 200;

struct Outcome {
    violations: Vec<Violation>,
    digest: u64,
    invocations: u64,
    simulated: std::time::Duration,
}

fn simulate(seed: u64, whole_trace: bool) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    rt.block_on(async move {
        let ran = fleet::run(seed, whole_trace).await;
        invariants::check(&ran);
        let w = &ran.world;
        let mut violations = w.violations.lock().expect("violations").clone();
        violations.sort();
        violations.dedup();
        Outcome {
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
    let started = WallInstant::now();
    let mut failed: BTreeMap<u64, Outcome> = BTreeMap::new();
    let mut by_kind: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let (mut invocations, mut simulated) = (0, std::time::Duration::ZERO);
    for &seed in &seeds {
        let outcome = simulate(seed, replay);
        invocations += outcome.invocations;
        simulated += outcome.simulated;
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
        "simulation: {} seeds in {:.1} s ({:.1} seeds/s), {invocations} invocations, {:.0} simulated minutes",
        seeds.len(),
        took.as_secs_f64(),
        seeds.len() as f64 / took.as_secs_f64(),
        simulated.as_secs_f64() / 60.0
    );
    for (kind, seeds) in &by_kind {
        eprintln!(
            "  {kind}: {} seeds: {:?}",
            seeds.len(),
            &seeds[..seeds.len().min(20)]
        );
    }
    for (seed, outcome) in failed.iter().take(5) {
        eprintln!("\nseed {seed} failed:");
        for v in outcome.violations.iter().take(10) {
            eprintln!("  {}: {}", v.kind, v.detail);
        }
        eprintln!(
            "  replay: SIM_SEED={seed} cargo test --test simulation -- --nocapture   (or make simulate SEED={seed})"
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
    let seeds = env("SIM_SEED").map_or_else(|| vec![3, 7, 11, 19], |s| vec![s]);
    for seed in seeds {
        let (a, b) = (simulate(seed, false), simulate(seed, false));
        assert!(a.invocations > 0, "seed {seed}: the run did nothing");
        assert_eq!(a.digest, b.digest, "two runs of seed {seed} differ");
        assert_eq!(a.violations, b.violations, "seed {seed}");
    }
}
