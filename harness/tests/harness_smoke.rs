//! The harness's own checks, with a stand-in function (`fake-function`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::{
    Attribute, BatchOutcome, EventSourceMapping, Function, FunctionConfig, HarnessError,
    Invocation, Moto, Outgoing, QueueSpec, RuntimeApi,
};
use serde_json::{Value, json};

const FAKE: &str = env!("CARGO_BIN_EXE_fake-function");

async fn fake() -> (RuntimeApi, Function) {
    let runtime = RuntimeApi::start().await.expect("runtime api");
    let function =
        Function::start(&FunctionConfig::new(FAKE), &runtime, None, None).expect("function");
    (runtime, function)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_api_hands_out_an_event_and_takes_the_reply() {
    let (runtime, function) = fake().await;
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let reply = runtime
        .invoke_json(&json!({"echo": {"a": 1}}), Duration::from_secs(7))
        .await
        .expect("reply");
    let Invocation::Response(body) = reply else {
        panic!("expected a response, got {reply:?}");
    };
    assert_eq!(body["echo"], json!({"a": 1}));
    let deadline = u128::from(body["deadline"].as_u64().unwrap());
    assert!(
        deadline >= before + 7000 && deadline < before + 9000,
        "deadline {deadline}"
    );
    assert!(
        body["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:lambda:us-east-1:")
    );

    // A second invocation on the same process gets a new request id.
    let again = runtime
        .invoke_json(&json!({"echo": 2}), Duration::from_secs(3))
        .await
        .expect("reply");
    assert_ne!(again.response().unwrap()["requestId"], body["requestId"]);
    assert!(function.is_running());
    assert_eq!(runtime.invocations_handed_out(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invocation_error_carries_its_type_and_message_and_the_process_goes_on() {
    let (runtime, function) = fake().await;
    let reply = runtime
        .invoke_json(&json!({"fail": "Boom"}), Duration::from_secs(5))
        .await
        .expect("reply");
    let Invocation::Error {
        error_type,
        error_message,
        header_error_type,
    } = reply
    else {
        panic!("expected an error, got {reply:?}");
    };
    assert!(!error_type.is_empty());
    assert!(
        error_message.contains("asked to fail with Boom"),
        "{error_message}"
    );
    assert!(header_error_type.is_some());
    let next = runtime
        .invoke(b"{\"echo\":1}".to_vec(), Duration::from_secs(5))
        .await
        .expect("reply");
    assert_eq!(next.response().unwrap()["echo"], 1);
    assert!(function.logs().contains("fake function ready"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_that_exits_mid_invocation_is_detected() {
    let (runtime, function) = fake().await;
    let err = runtime
        .invoke_json(&json!({"exit": 3}), Duration::from_secs(10))
        .await
        .expect_err("no reply");
    assert!(matches!(err, HarnessError::ProcessExited(_)), "{err}");
    let status = function
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exited");
    assert_eq!(status.code(), Some(3));
    // Later invocations fail at once rather than hang.
    let err = runtime
        .invoke_json(&json!({"echo": 1}), Duration::from_secs(10))
        .await
        .expect_err("no process");
    assert!(matches!(err, HarnessError::ProcessExited(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_never_comes_times_out_after_the_deadline() {
    let (runtime, _function) = fake().await;
    let started = std::time::Instant::now();
    let err = runtime
        .invoke_with(harness::InvokeRequest {
            payload: br#"{"sleep_ms": 5000}"#.to_vec(),
            timeout: Duration::from_millis(500),
            grace: Duration::from_millis(500),
        })
        .await
        .expect_err("timeout");
    assert!(matches!(err, HarnessError::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_error_is_recorded_and_the_exit_status_seen() {
    let runtime = RuntimeApi::start().await.expect("runtime api");
    let function = Function::start(
        &FunctionConfig::new(FAKE).env("FAKE_INIT_ERROR", "MAX_RECEIVE_COUNT must be a number"),
        &runtime,
        None,
        None,
    )
    .expect("function");
    let init = runtime
        .wait_init_error(Duration::from_secs(10))
        .await
        .expect("init error");
    assert_eq!(init.error_type, "Runtime.InitError");
    assert!(init.error_message.contains("MAX_RECEIVE_COUNT"));
    let status = function
        .wait_exit(Duration::from_secs(5))
        .await
        .expect("exit");
    assert!(!status.success());
    assert!(function.logs().contains("configuration error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mapping_deletes_successes_and_the_redrive_policy_takes_repeated_failures() {
    let moto = Moto::start().await.expect("moto");
    let sqs = moto.sqs().await;
    let dlq = sqs
        .create_queue(&QueueSpec::new("smoke-source-dlq"))
        .await
        .expect("dlq");
    let source = sqs
        .create_queue(
            &QueueSpec::new("smoke-source")
                .visibility_timeout(1)
                .redrive(&dlq.arn, 2),
        )
        .await
        .expect("source");
    let mut ok_ids = Vec::new();
    for i in 0..7 {
        let id = sqs
            .send(
                &source.url,
                &Outgoing::new(format!("{{\"n\":{i}}}")).attribute("Kind", Attribute::string("ok")),
            )
            .await
            .unwrap();
        ok_ids.push(id);
    }
    let fail_id = sqs.send_body(&source.url, "please fail").await.unwrap();

    let (runtime, function) = fake().await;
    let mapping = EventSourceMapping::new(sqs.clone(), source.clone(), runtime.clone());
    let report = mapping.run(Duration::from_secs(30)).await.expect("run");
    assert!(report.drained, "queue not drained");
    assert!(report.failed_invocations().is_empty());
    let deleted = report.deleted();
    for id in &ok_ids {
        assert!(deleted.contains(id), "{id} not deleted");
    }
    assert!(!deleted.contains(&fail_id));
    assert_eq!(report.handed_back()[&fail_id], vec![1, 2]);

    // The event is Lambda's SQS event.
    let first = &report.batches[0];
    let record: &Value = &first.event["Records"][0];
    assert_eq!(record["eventSource"], "aws:sqs");
    assert_eq!(record["eventSourceARN"], source.arn.as_str());
    assert_eq!(record["awsRegion"], "us-east-1");
    assert_eq!(record["attributes"]["ApproximateReceiveCount"], "1");
    assert!(record["attributes"]["SentTimestamp"].as_str().is_some());
    assert_eq!(record["messageAttributes"]["Kind"]["stringValue"], "ok");
    assert_eq!(record["messageAttributes"]["Kind"]["dataType"], "String");
    assert_eq!(record["md5OfBody"].as_str().unwrap().len(), 32);
    assert!(matches!(first.outcome, BatchOutcome::Reply { .. }));

    let moved = sqs.receive_all(&dlq.url).await.unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].body, "please fail");
    assert!(function.is_running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_queue_yields_fifo_records() {
    let moto = Moto::start().await.expect("moto");
    let sqs = moto.sqs().await;
    let source = sqs
        .create_queue(&QueueSpec::new("smoke.fifo").visibility_timeout(1))
        .await
        .expect("fifo");
    for i in 0..3 {
        sqs.send(
            &source.url,
            &Outgoing::new(format!("m{i}")).fifo("g1", format!("d{i}")),
        )
        .await
        .unwrap();
    }
    let (runtime, _function) = fake().await;
    let mapping = EventSourceMapping::new(sqs.clone(), source.clone(), runtime);
    let report = mapping.run(Duration::from_secs(20)).await.expect("run");
    assert!(report.drained);
    let record = &report.batches[0].event["Records"][0];
    assert!(
        record["eventSourceARN"]
            .as_str()
            .unwrap()
            .ends_with(".fifo")
    );
    assert_eq!(record["attributes"]["MessageGroupId"], "g1");
    assert!(record["attributes"]["SequenceNumber"].as_str().is_some());
    let bodies: Vec<String> = report
        .batches
        .iter()
        .flat_map(|b| b.messages.iter().map(|m| m.body.clone()))
        .collect();
    assert_eq!(bodies, vec!["m0", "m1", "m2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stack_that_asks_for_watermarks_gets_the_table_and_the_dynamodb_endpoint() {
    let stack = harness::StackConfig::new(FAKE)
        .watermarks()
        .start()
        .await
        .expect("stack");
    let table = stack.watermark_table.clone().expect("a table");
    assert_eq!(table, harness::WATERMARK_TABLE);
    assert_eq!(
        stack.function_config.vars()["AWS_ENDPOINT_URL_DYNAMODB"],
        stack.moto.endpoint()
    );
    assert_eq!(stack.dynamo.item(&table, "i#u").await.expect("table"), None);

    let missing = harness::StackConfig::new(FAKE)
        .watermarks()
        .without_watermark_table()
        .start()
        .await
        .expect("stack");
    let err = missing
        .dynamo
        .item(harness::WATERMARK_TABLE, "i#u")
        .await
        .expect_err("no table");
    assert!(err.to_string().contains("ResourceNotFound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_polling_one_queue_share_its_messages_and_each_is_deleted_once() {
    let stack = harness::StackConfig::new(FAKE)
        .start()
        .await
        .expect("stack");
    let replica = stack.start_replica("AKIAREPLICA000000002").await.unwrap();
    assert_eq!(
        stack.function_config.vars().get("AWS_ACCESS_KEY_ID"),
        None,
        "the first container keeps the default key"
    );
    let mut sent = std::collections::BTreeSet::new();
    for i in 0..30 {
        sent.insert(
            stack
                .sqs
                .send_body(&stack.source.url, &format!("{{\"n\":{i}}}"))
                .await
                .unwrap(),
        );
    }
    let mappings = [
        stack.mapping().batch_size(2),
        stack.mapping_to(&replica.runtime).batch_size(2),
    ];
    let reports = harness::run_together(&mappings, Duration::from_secs(60))
        .await
        .expect("run");
    assert!(reports.iter().all(|r| r.drained));
    let mut deleted = Vec::new();
    for r in &reports {
        assert!(r.failed_invocations().is_empty());
        deleted.extend(r.deleted());
    }
    deleted.sort();
    assert_eq!(deleted, sent.into_iter().collect::<Vec<_>>());
    assert!(
        stack.runtime.invocations_handed_out() > 0 && replica.runtime.invocations_handed_out() > 0,
        "both containers worked: {} and {}",
        stack.runtime.invocations_handed_out(),
        replica.runtime.invocations_handed_out()
    );
    assert!(replica.function.is_running() && stack.function.is_running());
}
