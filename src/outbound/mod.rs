//! Adapters to the outside systems: Amazon Connect, the dead-letter queues and the
//! watermark table. They translate and classify; they decide no policy.

pub mod connect;
pub mod dead_letter;
pub mod watermarks;
