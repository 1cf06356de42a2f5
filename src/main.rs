//! The Lambda entry point: configuration, clients, and the Runtime API loop.

use connect_identity_sync::config::Config;
use connect_identity_sync::runtime;

#[tokio::main]
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
