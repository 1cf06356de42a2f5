//! `connect-identity-sync-scim`: the package's SCIM 2.0 endpoint (SPEC §8), behind an
//! Amazon API Gateway HTTP API (payload format 2.0) at `/scim/v2`.
//!
//! Microsoft Entra ID and Okta look agents up by `userName` and send their changes as a
//! PatchOp (Entra ID) or a whole User resource (Okta). Each write is judged at once with
//! the function's own code — the library's SCIM readers (`inbound::scim`), admission
//! (`domain::document`), the security policy and the identity-mode rules
//! (`pipeline::judge`) — against the user's identity as Connect holds it, and an
//! accepted change goes to the function's source queue as a canonical document. The
//! endpoint never writes to Connect: every change passes the function's staleness guard,
//! quota sharing and dead-letter classes like any other.
//!
//! | module | what it holds |
//! |---|---|
//! | `settings` | the variables, read once; an invalid one stops the start |
//! | `tokens` | the bearer tokens from Secrets Manager, compared in constant time |
//! | `directory` | Connect reads, each paced by its operation's share (`limiter`) |
//! | `routes` | the routes, their checks and answers |
//! | `wire` | SCIM JSON: resources, list responses, errors, discovery |
//! | `queue` | the canonical document sent to `SOURCE_QUEUE_URL` |
//! | `metrics` | EMF `ScimRequests` and `ScimAuthFailures` |

mod directory;
mod metrics;
mod queue;
mod routes;
mod settings;
mod tokens;
mod wire;

use std::sync::Arc;

use connect_identity_sync::runtime;

use settings::Settings;

// One request at a time per container, as Lambda hands them out.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_http::Error> {
    runtime::init_logging();
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => return stop(&error).await,
    };
    let shared = settings.sdk_config().await;
    let tokens = match tokens::Tokens::load(&shared, &settings.token_secret).await {
        Ok(tokens) => tokens,
        Err(error) => return stop(&error).await,
    };
    let endpoint = Arc::new(routes::Endpoint::new(&shared, settings, tokens));
    lambda_http::run(lambda_http::service_fn(move |request| {
        let endpoint = Arc::clone(&endpoint);
        async move { Ok::<_, std::convert::Infallible>(endpoint.serve(request).await) }
    }))
    .await
}

/// Reports why the endpoint cannot start to the Runtime API and exits non-zero.
async fn stop(
    error: &connect_identity_sync::config::ConfigError,
) -> Result<(), lambda_http::Error> {
    tracing::error!(variable = %error.variable, "{error}");
    runtime::report_init_error(error).await;
    std::process::exit(1);
}
