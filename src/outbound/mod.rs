//! Adapters to the outside systems: Amazon Connect (with its username index and its
//! dry-run switch), the dead-letter queues and the watermark table, and the HTTPS client they share.
//! They translate and classify; they decide no policy.

pub mod connect;
pub mod dead_letter;
pub mod dry_run;
pub mod https;
pub mod watermarks;
