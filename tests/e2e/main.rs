//! End-to-end tests: the built binaries through the Lambda Runtime API against the Connect
//! emulator and moto over real HTTP, one module per feature. Fixtures live in `harness`.

mod apply;
mod batches;
mod chaos;
mod config;
mod dead_letters;
mod dry_run;
mod fleet;
mod hardening;
mod limits;
mod log_hygiene;
mod malformed;
mod metrics;
mod reconcile;
mod record_ids;
mod redrive;
mod retries;
mod scim;
mod scim_endpoint;
mod time;
mod tls;
mod usernames;
mod watermarks;
