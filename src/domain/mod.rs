//! The change model, identity types, security policy and failure classes. No SDK,
//! no serde, no I/O.

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
