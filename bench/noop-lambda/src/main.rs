//! The smallest useful Lambda on `lambda_runtime`: every event gets `{}` back.
//!
//! Built with the workspace's release profile, it is the yardstick for
//! `connect-identity-sync`'s start-up time, memory and binary size (`make bench`).

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

// The same runtime flavour as the function: one invocation at a time per process, no
// worker thread per core. A multi-thread yardstick would start slower and flatter the ratio.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(Value::Object(serde_json::Map::new()))
    }))
    .await
}
