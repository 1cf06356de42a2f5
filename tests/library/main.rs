//! Library-level tests: the pipeline and the handler over in-memory ports (`common`), no
//! network: judging, coalescing, ordering, attempts under the deadline and the limiter,
//! the staleness guard's use of its port, and the sample events' replies.

mod common;
mod deferrals;
mod events;
mod guard;
mod operations;
mod pipeline;
mod schedule;
