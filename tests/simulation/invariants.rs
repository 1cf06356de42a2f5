//! The invariants of SPEC §2–§4, checked once a run has ended (those that must hold
//! at every instant — a reply before its deadline, an update only under a live lease of
//! its sender, an update only over the version it read, a lease request never refused by
//! itself — are checked as the run goes, in `fleet`, `connect` and `table`).

use std::collections::{BTreeMap, BTreeSet};

use connect_identity_sync::domain::identity::Field;
use connect_identity_sync::domain::ports::DeadLetter;

use crate::connect::UPDATE;
use crate::fleet::{End, Kind, MAX_RECEIVE_COUNT, Ran, State};
use crate::world::InvocationId;

/// The most of its calls the other caller, and the fleet, may find throttled by the
/// account's quota (the fleet test's bound).
const THROTTLED_SHARE: f64 = 0.08;

pub fn check(ran: &Ran) {
    let w = &ran.world;
    let faulted = w.faulted.lock().expect("faulted").clone();
    let messages = ran.queue.messages.lock().expect("queue");
    let mut letters: BTreeMap<&str, Vec<&DeadLetter>> = BTreeMap::new();
    for l in &ran.letters {
        letters.entry(l.source_id.as_str()).or_default().push(l);
    }
    let mut unsettled_users = BTreeSet::new();
    let mut lost_users = BTreeSet::new();
    // Per change: its messages (the original and the copies queued again).
    let mut by_change: BTreeMap<usize, Vec<&crate::fleet::Message>> = BTreeMap::new();
    for m in messages.iter() {
        by_change.entry(m.change).or_default().push(m);
    }
    for (&c, msgs) in &by_change {
        let change = &ran.changes[c];
        // A delivery on which the record met a fault of its own, got no reply, or was
        // acknowledged too late to be deleted (SQS counts each as a receive).
        let own_delivery = |(inv, _, end): &(InvocationId, u64, Option<End>)| {
            matches!(end, Some(End::Lost | End::Stale | End::Overlapped))
                || faulted.contains(&(*inv, change.user.clone()))
                || faulted.contains(&(*inv, String::new()))
        };
        let own: u32 = msgs
            .iter()
            .flat_map(|m| m.deliveries.iter())
            .filter(|d| own_delivery(d))
            .count() as u32;
        let receives: u32 = msgs.iter().map(|m| m.receive_count).sum();
        let what = match &change.kind {
            Kind::Good(_) => "a good change".to_owned(),
            Kind::Bad(class) => format!("a {class} change"),
        };
        // A deferral spends none of the record's own failures (SPEC §2.4, §3): the
        // function counts them as the copy's `OwnFailures` and its receive count less the
        // receives noted as deferrals in the guard's table, so every receive of a message
        // but its last (every one, for a message in the catch-all) must have ended in a
        // failure of its own or been noted as a deferral (its copy refused or late), and a
        // copy may carry no more than its change's earlier messages met.
        let mut own_before = 0u32;
        for m in msgs {
            let carried = m
                .attributes
                .iter()
                .find(|(name, _, _)| *name == "OwnFailures")
                .and_then(|(_, _, v)| v.parse::<u32>().ok())
                .unwrap_or(0);
            if carried > own_before {
                w.violate(
                    "deferral-counted-as-own-failure",
                    format!(
                        "{} ({what}) was queued again carrying {carried} failures of its own; its earlier messages met {own_before}",
                        m.id
                    ),
                );
            }
            let counted = if m.state == State::CatchAll {
                m.deliveries.len()
            } else {
                m.deliveries.len().saturating_sub(1)
            };
            for (k, d) in m.deliveries.iter().take(counted).enumerate() {
                let noted = ran.table.noted(&m.id, k as u32 + 1);
                if !own_delivery(d) && !noted {
                    w.violate(
                        "deferral-spent-a-receive",
                        format!(
                            "{} ({what}): receive {} (invocation {:?}) ended {:?} without a failure of its own, and the receive count kept it",
                            m.id,
                            k + 1,
                            d.0,
                            d.2
                        ),
                    );
                }
            }
            own_before += m.deliveries.iter().filter(|d| own_delivery(d)).count() as u32;
        }
        for m in msgs {
            match m.state {
                State::CatchAll => {
                    lost_users.insert(change.user.clone());
                    w.violate(
                        "catch-all",
                        format!(
                            "{} ({what}) reached the source queue's catch-all: {} receives, {own} with a fault of its own",
                            m.id, m.receive_count
                        ),
                    );
                }
                State::Queued => {
                    unsettled_users.insert(change.user.clone());
                }
                State::Deleted => {}
            }
        }
        let mine: Vec<&DeadLetter> = msgs
            .iter()
            .flat_map(|m| letters.get(m.id.as_str()).cloned().unwrap_or_default())
            .collect();
        if matches!(change.kind, Kind::Good(_)) && !mine.is_empty() {
            lost_users.insert(change.user.clone());
        }
        for l in &mine {
            // The letter's `Attempts`: the record's own failures as the function counted
            // them, this delivery's included (a failure of its own when retryable).
            let bound = if l.class.is_retryable() { own } else { own + 1 };
            if l.attempts > bound {
                w.violate(
                    "dead-letter-attempts-above-own-failures",
                    format!(
                        "{} ({what}) dead-lettered as {} with Attempts {} after {own} failures of its own",
                        l.source_id, l.class, l.attempts
                    ),
                );
            }
            let persistent = l.class.is_retryable() && own >= MAX_RECEIVE_COUNT;
            match &change.kind {
                Kind::Bad(class) if *class == l.class => {}
                _ if persistent => {}
                Kind::Bad(class) => w.violate(
                    "dead-lettered-by-another-class",
                    format!(
                        "{} ({class}) dead-lettered as {} after {receives} receives, {own} with a fault of its own",
                        change.id, l.class
                    ),
                ),
                Kind::Good(_) => w.violate(
                    "good-change-dead-lettered",
                    format!(
                        "{} dead-lettered as {} after {receives} receives, {own} with a fault of its own",
                        change.id, l.class
                    ),
                ),
            }
        }
        // (One in the catch-all is reported as such.)
        let queued = msgs
            .iter()
            .any(|m| matches!(m.state, State::Queued | State::CatchAll));
        if matches!(change.kind, Kind::Bad(_)) && mine.is_empty() && !queued {
            w.violate(
                "bad-change-acknowledged",
                format!(
                    "{} ({what}) was acknowledged without a dead letter",
                    change.id
                ),
            );
        }
    }
    if !ran.drained {
        let pending = messages.iter().filter(|m| m.state == State::Queued).count();
        let limit = crate::fleet::limit(&w.faults);
        w.violate(
            "not-drained",
            format!(
                "{pending} messages still in the queue {} minutes in",
                limit.as_secs() / 60
            ),
        );
    }
    drop(messages);

    // Every field at the value of its newest accepted change.
    let connect = ran.connect.state.lock().expect("connect");
    for (user, sim) in &connect.users {
        if unsettled_users.contains(user) || lost_users.contains(user) {
            continue;
        }
        for field in [
            Field::FirstName,
            Field::LastName,
            Field::SecondaryEmail,
            Field::Mobile,
        ] {
            let newest = ran
                .changes
                .iter()
                .filter(|c| &c.user == user)
                .filter_map(|c| match &c.kind {
                    Kind::Good(set) => set.get(&field).map(|v| (c.occurred_us, &c.id, v)),
                    Kind::Bad(_) => None,
                })
                .max_by_key(|(at, _, _)| *at);
            let Some((_, id, value)) = newest else {
                continue;
            };
            let actual = sim.info.get(field);
            if actual != value.as_deref() {
                w.violate(
                    "field-not-at-newest-change",
                    format!("{user}'s {field:?} is not the value of {id}, its newest change"),
                );
            }
        }
    }

    // Quota: within the fleet test's bounds, in runs whose table works (a failing table
    // leaves each container to its own share, which the fleet test does not cover).
    let f = &w.faults;
    if !f.table_faulty() && f.other_caller > 0.0 {
        let (calls, s) = connect.other.share(Some(UPDATE));
        if calls >= 50 && s > THROTTLED_SHARE {
            w.violate(
                "quota-other-caller",
                format!(
                    "the other caller was throttled on {:.1} % of {calls} calls",
                    100.0 * s
                ),
            );
        }
        let (calls, s) = connect.fleet.share(None);
        if calls >= 50 && s > THROTTLED_SHARE {
            let by_op: Vec<String> = crate::connect::OPS
                .iter()
                .enumerate()
                .filter(|(op, _)| connect.fleet.calls[*op] > 0)
                .map(|(op, (name, _, _))| {
                    format!(
                        "{name} {} of {}",
                        connect.fleet.throttled[op], connect.fleet.calls[op]
                    )
                })
                .collect();
            w.violate(
                "quota-fleet",
                format!(
                    "the containers were throttled on {:.1} % of {calls} calls ({})",
                    100.0 * s,
                    by_op.join(", ")
                ),
            );
        }
    }
}
