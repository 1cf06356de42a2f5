//! Several long-lived containers of the function on one source queue, as Lambda runs them
//! under an SQS event source mapping with `MaximumConcurrency`: each container is a process
//! with its own Runtime API and its own poller, and a container can be killed in the middle
//! of an invocation and replaced by a new one (a new process, cold, on a new Runtime API), as
//! when Lambda's host fails or the invocation runs out of memory. The batch of a killed
//! invocation gets no reply and is left on the queue until its visibility timeout ends.
//!
//! Each process signs its Connect calls with its own access key id
//! (`AKIAFLEET<slot>G<generation>`), so the emulator's journal and
//! [`connect_emulator::EmulatorHandle::stats`] tell every container's calls apart, and the
//! function's from another caller's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::esm::{Batch, BatchOutcome, EventSourceMapping, MappingReport};
use crate::function::Function;
use crate::runtime_api::RuntimeApi;
use crate::stack::Stack;

/// The prefix of every fleet container's access key id.
pub const FLEET_KEY_PREFIX: &str = "AKIAFLEET";

/// One planned kill: the `nth` invocation (counted from 1 over the slot's whole life) of
/// container `slot` is killed `after` it was picked up. An invocation that ends sooner
/// moves the kill to the slot's next one.
#[derive(Clone, Copy, Debug)]
pub struct Kill {
    /// Which container.
    pub slot: usize,
    /// Its invocation to kill, from 1.
    pub nth: usize,
    /// How long after the function picked the invocation up.
    pub after: Duration,
}

/// How to run a fleet.
#[derive(Clone, Debug)]
pub struct FleetConfig {
    containers: usize,
    batch_size: i32,
    limit: Duration,
    kills: Vec<Kill>,
}

impl FleetConfig {
    /// `containers` containers (at least 1), batch size 10, at most 5 minutes.
    #[must_use]
    pub fn new(containers: usize) -> Self {
        Self {
            containers: containers.max(1),
            batch_size: 10,
            limit: Duration::from_secs(300),
            kills: Vec::new(),
        }
    }

    /// The mapping's batch size.
    #[must_use]
    pub fn batch_size(mut self, size: i32) -> Self {
        self.batch_size = size;
        self
    }

    /// How long the fleet may take to drain the queue.
    #[must_use]
    pub fn limit(mut self, limit: Duration) -> Self {
        self.limit = limit;
        self
    }

    /// Kills container `slot` in its `nth` invocation, `after` it was picked up.
    #[must_use]
    pub fn kill(mut self, slot: usize, nth: usize, after: Duration) -> Self {
        self.kills.push(Kill { slot, nth, after });
        self
    }
}

/// What one container slot did over its life (every process it ran).
#[derive(Clone, Debug, Default)]
pub struct SlotReport {
    /// Its invocations, in order, killed ones included.
    pub mapping: MappingReport,
    /// Access key ids of its processes, in order.
    pub callers: Vec<String>,
    /// Invocations killed.
    pub kills: usize,
    /// Everything its processes wrote, in order.
    pub logs: Vec<String>,
}

/// What the fleet did.
#[derive(Clone, Debug, Default)]
pub struct FleetReport {
    /// Per container slot.
    pub slots: Vec<SlotReport>,
    /// Whether the queue was drained (else the time limit passed).
    pub drained: bool,
    /// From the first poll to the queue found empty (or the limit).
    pub elapsed: Duration,
}

impl FleetReport {
    /// Every container's access key id.
    #[must_use]
    pub fn callers(&self) -> BTreeSet<String> {
        self.slots
            .iter()
            .flat_map(|s| s.callers.iter().cloned())
            .collect()
    }

    /// Invocations killed.
    #[must_use]
    pub fn kills(&self) -> usize {
        self.slots.iter().map(|s| s.kills).sum()
    }

    /// Every batch of every container.
    pub fn batches(&self) -> impl Iterator<Item = &Batch> {
        self.slots.iter().flat_map(|s| s.mapping.batches.iter())
    }

    /// Records delivered, redeliveries included.
    #[must_use]
    pub fn deliveries(&self) -> usize {
        self.slots.iter().map(|s| s.mapping.deliveries()).sum()
    }

    /// Records handed back (not deleted after their invocation), killed invocations' included.
    #[must_use]
    pub fn handed_back(&self) -> usize {
        self.batches().map(|b| b.handed_back().len()).sum()
    }

    /// The longest an invocation took to reply (killed ones and those without a reply
    /// left out).
    #[must_use]
    pub fn slowest_reply(&self) -> Duration {
        self.batches()
            .filter(|b| matches!(b.outcome, BatchOutcome::Reply { .. }))
            .map(|b| b.elapsed)
            .max()
            .unwrap_or_default()
    }

    /// Invocations that got no valid reply and were not killed on purpose.
    #[must_use]
    pub fn failed_invocations(&self) -> Vec<&Batch> {
        self.batches()
            .filter(|b| match &b.outcome {
                BatchOutcome::NoReply(why) => !why.contains(KILLED),
                BatchOutcome::Reply { .. } => false,
                _ => true,
            })
            .collect()
    }

    /// Every process's output, slot by slot.
    #[must_use]
    pub fn logs(&self) -> String {
        self.slots
            .iter()
            .flat_map(|s| s.logs.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

const KILLED: &str = "killed by the fleet";

/// Runs `config.containers` containers of `stack`'s function (its configuration, its
/// standard source queue and function timeout) until the queue holds nothing, visible or
/// in flight, or the limit passes. The stack's own process is left idle.
///
/// # Errors
/// When SQS fails or a process cannot be started.
pub async fn run_fleet(stack: &Stack, config: &FleetConfig) -> Result<FleetReport, HarnessError> {
    let started = Instant::now();
    let deadline = started + config.limit;
    let mut tasks = Vec::new();
    for slot in 0..config.containers {
        let kills: Vec<Kill> = config
            .kills
            .iter()
            .filter(|k| k.slot == slot)
            .copied()
            .collect();
        let ctx = SlotContext {
            slot,
            sqs: stack.sqs.clone(),
            queue: stack.source.clone(),
            function: stack.function_config.clone(),
            connect: stack.emulator.endpoint_url(),
            moto: stack.moto.endpoint(),
            function_timeout: stack.function_timeout,
            batch_size: config.batch_size,
            deadline,
            kills,
        };
        tasks.push(tokio::spawn(ctx.run()));
    }
    let mut report = FleetReport {
        drained: true,
        ..FleetReport::default()
    };
    for task in tasks {
        let (slot, drained) = task
            .await
            .map_err(|e| HarnessError::Start(format!("a container task failed: {e}")))??;
        report.drained &= drained;
        report.slots.push(slot);
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

struct SlotContext {
    slot: usize,
    sqs: crate::sqs::Sqs,
    queue: crate::sqs::Queue,
    function: crate::function::FunctionConfig,
    connect: String,
    moto: String,
    function_timeout: Duration,
    batch_size: i32,
    deadline: Instant,
    kills: Vec<Kill>,
}

impl SlotContext {
    async fn run(mut self) -> Result<(SlotReport, bool), HarnessError> {
        let mut report = SlotReport::default();
        let mut invocations = 0usize;
        let mut generation = 0usize;
        self.kills.sort_by_key(|k| k.nth);
        loop {
            let key = format!("{FLEET_KEY_PREFIX}{}G{generation}", self.slot);
            let runtime = RuntimeApi::start().await?;
            let config = self.function.clone().env("AWS_ACCESS_KEY_ID", &key);
            let mut process =
                Function::start(&config, &runtime, Some(&self.connect), Some(&self.moto))?;
            report.callers.push(key);
            let mapping =
                EventSourceMapping::new(self.sqs.clone(), self.queue.clone(), runtime.clone())
                    .function_timeout(self.function_timeout)
                    .batch_size(self.batch_size);
            let ended = loop {
                if Instant::now() >= self.deadline {
                    break Some(false);
                }
                let kill = self
                    .kills
                    .first()
                    .filter(|k| k.nth <= invocations + 1)
                    .copied();
                let handed_out = runtime.invocations_handed_out();
                let poll = mapping.poll_once();
                tokio::pin!(poll);
                let killer = async {
                    match kill {
                        None => std::future::pending::<()>().await,
                        Some(k) => {
                            while runtime.invocations_handed_out() == handed_out {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                            }
                            tokio::time::sleep(k.after).await;
                        }
                    }
                };
                let batch = tokio::select! {
                    batch = &mut poll => match batch {
                        Ok(batch) => batch,
                        // A receive that failed after the client's retries (moto
                        // answering HTTP 500 under load): the mapping polls again, as
                        // Lambda's does.
                        Err(e) => {
                            eprintln!("event source mapping: a poll failed, polling again: {e}");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            continue;
                        }
                    },
                    () = killer => {
                        process.kill();
                        process.wait_exit(Duration::from_secs(10)).await;
                        runtime.mark_exited(KILLED.to_owned());
                        let batch = poll.await?;
                        self.kills.remove(0);
                        report.kills += 1;
                        if let Some(batch) = batch {
                            invocations += 1;
                            report.mapping.batches.push(batch);
                        }
                        break None;
                    }
                };
                match batch {
                    Some(batch) => {
                        invocations += 1;
                        report.mapping.batches.push(batch);
                    }
                    None => {
                        // A count that failed is asked again at the next empty poll.
                        if self
                            .sqs
                            .total_depth(&self.queue.url)
                            .await
                            .is_ok_and(|depth| depth == 0)
                        {
                            break Some(true);
                        }
                    }
                }
                if let Some(status) = runtime.exited() {
                    return Err(HarnessError::ProcessExited(format!(
                        "container {} ({status})",
                        self.slot
                    )));
                }
            };
            // Let the last lines through the pipes before keeping them.
            tokio::time::sleep(Duration::from_millis(100)).await;
            report.logs.extend(process.log_lines());
            drop(process);
            if let Some(drained) = ended {
                report.mapping.drained = drained;
                return Ok((report, drained));
            }
            generation += 1;
        }
    }
}
