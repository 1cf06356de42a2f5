//! connect-identity-sync: keeps Amazon Connect agents' identity in step with the
//! identity provider. Events arrive through `inbound`, are judged by `domain`, applied
//! by `pipeline` and reach Connect and the dead-letter queues through `outbound`.

pub mod clock;
pub mod config;
pub mod domain;
pub mod handler;
pub mod inbound;
pub mod limiter;
pub mod metrics;
pub mod outbound;
pub mod pipeline;
pub mod runtime;
