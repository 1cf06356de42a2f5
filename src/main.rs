//! The Lambda entry point: configuration, clients, and the Runtime API loop.

use connect_identity_sync::config::Config;
use connect_identity_sync::runtime;

// One invocation at a time per process, and one vCPU up to 1769 MB: a current-thread
// runtime does the same work without starting a worker thread per core.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_logging();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(variable = %error.variable, "{error}");
            runtime::report_init_error(&error).await;
            std::process::exit(1);
        }
    };
    runtime::serve(runtime::build(config).await).await
}
