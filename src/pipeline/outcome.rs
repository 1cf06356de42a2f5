//! How the work on a record ended: the pipeline's one outcome type, from the attempt
//! loop (or the guard's table, or admission) to settlement.

use crate::domain::error::Failure;
use crate::domain::identity::Field;

/// How the work on one record (or on a group of coalesced records) ended: the one
/// outcome type from the attempt loop (or the table, or admission) to settlement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Outcome {
    Updated(Vec<Field>),
    Unchanged,
    /// `Unchanged`, because the staleness guard found every field of the change
    /// superseded (counted as `Superseded` once the record settles so).
    Superseded,
    /// Failed, after this many attempts of the failing call.
    Failed(Failure, u32),
    /// An `UpdateUserIdentityInfo` that may have reached Connect and got no answer
    /// (`UnknownError`): settled as `Failed`, and the user's lease is kept until it
    /// lapses, so that no newer change is applied before the request could land.
    Unknown(Failure, u32),
    /// Not done before the deadline.
    Deferred,
    /// The user's lease stayed held by another invocation until the deadline.
    LeaseHeld,
    /// The update schedule had no turn for it before the deadline: deferred before the
    /// user was read.
    NoTurn,
}

impl From<Failure> for Outcome {
    fn from(f: Failure) -> Self {
        Outcome::Failed(f, 0)
    }
}
