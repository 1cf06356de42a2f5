//! The Lambda entry point: configuration, clients, and the Runtime API loop.

use connect_identity_sync::config::Config;
use connect_identity_sync::runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    runtime::init_logging();
    let app = match Config::from_env() {
        Ok(config) => runtime::build(config).await,
        Err(error) => Err(error),
    };
    match app {
        Ok(app) => runtime::serve(app).await,
        Err(error) => {
            tracing::error!(variable = %error.variable, "{error}");
            runtime::report_init_error(&error).await;
            std::process::exit(1);
        }
    }
}
