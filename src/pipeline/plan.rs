//! Planning, pure and without ports: group admitted changes by user and FIFO lane,
//! order each user's changes by `OccurredAt` (ties in arrival order), and coalesce them.

use std::collections::HashMap;

use crate::domain::change::{ChangeRequest, IdentityChange};
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::record::Record;

use super::apply::Outcome;

/// An admitted change and the user it resolved to.
pub(super) struct Target {
    pub instance: InstanceId,
    pub user: UserId,
    pub request: ChangeRequest,
}

/// One user's changes, applied together.
pub(super) struct Unit {
    pub members: Vec<usize>,
    pub work: Work,
}

pub(super) enum Work {
    Done(Outcome),
    Apply {
        instance: InstanceId,
        user: UserId,
        changes: Vec<ChangeRequest>,
    },
}

/// Groups records into lanes run one after another inside, lanes side by side.
/// Outside FIFO every user is a lane, holding all of that user's changes of the
/// invocation; in FIFO every message group is a lane, and consecutive changes to the
/// same user within it are coalesced.
pub(super) fn build_lanes(
    records: &[Record],
    targets: Vec<Result<Target, Outcome>>,
    fifo: bool,
) -> Vec<Vec<Unit>> {
    #[derive(PartialEq, Eq, Hash)]
    enum LaneKey {
        Group(String),
        User(InstanceId, UserId),
    }
    let mut lanes: Vec<Vec<Unit>> = Vec::new();
    let mut lane_by_key: HashMap<LaneKey, usize> = HashMap::new();
    for (i, target) in targets.into_iter().enumerate() {
        let key = if fifo {
            records[i].group.clone().map(LaneKey::Group)
        } else {
            target
                .as_ref()
                .ok()
                .map(|t| LaneKey::User(t.instance.clone(), t.user.clone()))
        };
        let lane_index = match key {
            Some(key) => *lane_by_key.entry(key).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            }),
            None => {
                lanes.push(Vec::new());
                lanes.len() - 1
            }
        };
        let lane = &mut lanes[lane_index];
        match target {
            Err(outcome) => lane.push(Unit {
                members: vec![i],
                work: Work::Done(outcome),
            }),
            Ok(target) => match lane.last_mut() {
                Some(Unit {
                    members,
                    work:
                        Work::Apply {
                            instance,
                            user,
                            changes,
                        },
                }) if *instance == target.instance && *user == target.user => {
                    members.push(i);
                    changes.push(target.request);
                }
                _ => lane.push(Unit {
                    members: vec![i],
                    work: Work::Apply {
                        instance: target.instance,
                        user: target.user,
                        changes: vec![target.request],
                    },
                }),
            },
        }
    }
    lanes
}

/// Several changes to one user, in `OccurredAt` order (ties in arrival order), as one.
pub(super) fn coalesce(changes: Vec<ChangeRequest>) -> IdentityChange {
    let mut ordered: Vec<(usize, ChangeRequest)> = changes.into_iter().enumerate().collect();
    ordered.sort_by_key(|(arrival, req)| (req.occurred_at, *arrival));
    ordered
        .into_iter()
        .fold(IdentityChange::default(), |acc, (_, req)| {
            acc.then(req.change)
        })
}
