//! End to end over HTTPS: the roots the function trusts. Without `SSL_CERT_FILE` only
//! the compiled-in roots of Amazon Trust Services vouch for an endpoint, whatever the
//! system's trust store holds, so a Connect endpoint whose certificate another CA signed
//! is refused; `SSL_CERT_FILE` naming that CA lets it through.

use std::time::Duration;

use harness::fixtures::{self, INSTANCE, Record, batch_item_failures, change, response, sqs_event};
use harness::{Stack, TlsFront};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_connect-identity-sync");
const QUEUE: &str = "arn:aws:sqs:us-east-1:123456789012:identity-changes";

/// A stack whose function reaches Connect through a TLS front. With `trust_the_front`,
/// `SSL_CERT_FILE` names the front's CA; without, `SSL_CERT_FILE` is unset and the
/// front's CA is in the system's trust store (`SSL_CERT_DIR`), where a client that
/// trusted the system's roots would find it.
async fn over_tls(trust_the_front: bool) -> (Stack, TlsFront) {
    let mut stack = fixtures::stack(BIN, 0).start().await.expect("stack starts");
    let front = TlsFront::start(&stack.emulator.endpoint_url()).expect("the TLS front starts");
    let mut config = stack
        .function_config
        .clone()
        .env("AWS_ENDPOINT_URL_CONNECT", &front.endpoint);
    config = if trust_the_front {
        config.env("SSL_CERT_FILE", front.bundle.to_string_lossy())
    } else {
        let store = front.bundle.with_file_name("system-store");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::copy(&front.bundle, store.join("front-ca.pem")).unwrap();
        config
            .without("SSL_CERT_FILE")
            .env("SSL_CERT_DIR", store.to_string_lossy())
    };
    stack
        .restart_function(config)
        .await
        .expect("the function restarts");
    (stack, front)
}

fn one_change() -> serde_json::Value {
    sqs_event(
        QUEUE,
        &[Record::json(
            "m-tls",
            &change(INSTANCE, "u-jdoe", &json!({"FirstName": "Janet"})),
        )],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ssl_cert_file_an_endpoint_no_amazon_root_vouches_for_is_refused_whatever_the_system_trusts()
 {
    let (stack, _front) = over_tls(false).await;
    let reply = response(stack.invoke(&one_change()).await.unwrap(), &stack);
    assert_eq!(
        batch_item_failures(&reply),
        vec!["m-tls".to_owned()],
        "the change is handed back, not applied and not lost"
    );
    assert_eq!(fixtures::identity(&stack, "u-jdoe")["FirstName"], "Jane");
    assert!(
        stack.emulator.journal().is_empty(),
        "no request got through the refused handshake"
    );
    let logs = stack
        .function
        .logs_once_containing("UnknownError", Duration::from_secs(5))
        .await;
    assert!(logs.contains("UnknownError"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_cert_file_naming_the_endpoints_ca_lets_the_change_through() {
    let (stack, _front) = over_tls(true).await;
    let reply = response(stack.invoke(&one_change()).await.unwrap(), &stack);
    assert_eq!(batch_item_failures(&reply), Vec::<String>::new());
    assert_eq!(fixtures::identity(&stack, "u-jdoe")["FirstName"], "Janet");
}
