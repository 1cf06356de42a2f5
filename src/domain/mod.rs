//! The change model, identity types, security policy, failure classes, watermark rules
//! and the ports (the traits the pipeline calls outside systems through).
//!
//! May touch: nothing else of the crate. No SDK, no serde, no I/O.

pub mod change;
pub mod document;
pub mod error;
pub mod event_id;
pub mod identity;
pub mod instance;
pub mod policy;
pub mod ports;
pub mod record;
pub mod watermark;
