//! Adapters to the outside systems: Amazon Connect and its dry-run switch, the dead-letter
//! queues, the watermark table, and the HTTPS client they share. They translate calls and
//! classify errors; they keep no state between calls and decide no policy.
//!
//! May touch: `domain` (to implement its ports) and the AWS SDKs. Never `pipeline` or
//! `inbound`.

pub mod connect;
pub mod dead_letter;
pub mod dry_run;
pub mod https;
pub mod schedules;
pub mod watermarks;
