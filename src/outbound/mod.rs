//! Adapters to the outside systems: Amazon Connect and the dead-letter queues. They
//! translate and classify; they decide no policy.

pub mod connect;
pub mod dead_letter;
pub mod directory_index;
