//! The per-record path that needs no call: JSON bytes → `inbound::read_invocation` →
//! `Admission::admit` → `IdentityChange::apply_to`. `make bench` runs it and copies the
//! figures into BENCHMARKS.md; `cargo bench --bench pipeline` runs it alone.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::document::{Admission, ChangeDocument, DEFAULT_MAX_CLOCK_SKEW};
use connect_identity_sync::domain::identity::InstanceId;
use connect_identity_sync::domain::policy::{EmailDomains, Policy};
use connect_identity_sync::domain::record::Record;
use connect_identity_sync::inbound::{Invocation, read_invocation};

const INSTANCE: &str = "11111111-2222-3333-4444-555555555555";
const QUEUE_ARN: &str = "arn:aws:sqs:us-east-1:123456789012:identity-changes";

fn admission() -> Admission {
    Admission {
        policy: Policy {
            allowed_instances: [InstanceId::parse(INSTANCE).expect("instance id")].into(),
            email_domains: EmailDomains::Only(["example.com".to_owned()].into()),
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: ["sp-admin".to_owned()].into(),
            trusted_sources: Some(["com.example.idp".to_owned()].into()),
        },
        default_instance: Some(InstanceId::parse(INSTANCE).expect("instance id")),
        phone_region: Some("US".parse().expect("region")),
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    }
}

fn current() -> IdentityInfo {
    IdentityInfo {
        first_name: Some("Agent".into()),
        last_name: Some("0001".into()),
        email: Some("agent0001@example.com".into()),
        secondary_email: None,
        mobile: Some("+14155550100".into()),
    }
}

fn canonical(n: usize) -> Value {
    json!({
        "InstanceId": INSTANCE,
        "UserId": format!("u-{n:04}"),
        "EventId": format!("okta-{n}"),
        "OccurredAt": "2026-11-29T09:14:58Z",
        "IdentityInfo": {
            "FirstName": "Jane",
            "LastName": format!("Doe {n}"),
            "Email": format!("agent{n:04}@example.com"),
            "SecondaryEmail": null,
            "Mobile": "(415) 555-0142"
        }
    })
}

fn eventbridge(n: usize, detail: Value) -> Value {
    json!({
        "version": "0",
        "id": format!("5d1f2a3c-0000-4000-8000-{n:012}"),
        "detail-type": "Identity User Updated",
        "source": "com.example.idp",
        "account": "123456789012",
        "time": "2026-11-29T09:15:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": detail,
    })
}

fn scim(n: usize) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": format!("scim-{n:04}"),
        "userName": format!("agent{n:04}"),
        "name": {"givenName": "Jane", "familyName": format!("Doe {n}")},
        "emails": [{"value": format!("agent{n:04}@example.com"), "type": "work", "primary": true}],
        "phoneNumbers": [{"value": "+1 415 555 0142", "type": "mobile"}],
        "active": true,
    })
}

fn sqs_event(bodies: &[Value]) -> Value {
    let records: Vec<Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            json!({
                "messageId": format!("2e1424d4-f796-459a-8184-{i:012}"),
                "receiptHandle": format!("AQEB{i}"),
                "body": body.to_string(),
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795000000000",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1795000000005"
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Ten records: half bare canonical documents, EventBridge events in the body, SCIM Users.
fn mixed_batch() -> Value {
    let bodies: Vec<Value> = (1..=10)
        .map(|n| match n % 4 {
            0 | 1 => canonical(n),
            2 => eventbridge(n, canonical(n)),
            _ => scim(n),
        })
        .collect();
    sqs_event(&bodies)
}

fn records(invocation: Invocation) -> Vec<Record> {
    match invocation {
        Invocation::Sqs { records, .. } => records,
        Invocation::EventBridge(record) => vec![*record],
    }
}

/// The whole path for one invocation's bytes; returns how many records were merged.
fn parse_validate_merge(admission: &Admission, current: &IdentityInfo, bytes: &[u8]) -> usize {
    let payload: &RawValue = serde_json::from_slice(bytes).expect("JSON");
    let invocation = read_invocation(payload).expect("a known envelope");
    let mut merged = 0;
    for record in records(invocation) {
        let document = record.document.expect("a change document");
        let request = admission.admit(document).expect("admitted");
        black_box(request.change.apply_to(current));
        merged += 1;
    }
    merged
}

fn benches(c: &mut Criterion) {
    let admission = admission();
    let current = current();
    let single = serde_json::to_vec(&eventbridge(1, canonical(1))).expect("JSON");
    let canonical_batch =
        serde_json::to_vec(&sqs_event(&(1..=10).map(canonical).collect::<Vec<_>>())).expect("JSON");
    let mixed = serde_json::value::to_raw_value(&mixed_batch()).expect("JSON");
    let mixed_bytes = mixed.get().as_bytes();
    assert_eq!(parse_validate_merge(&admission, &current, mixed_bytes), 10);

    let mut group = c.benchmark_group("parse_validate_merge");
    group.throughput(Throughput::Elements(1));
    group.bench_function("eventbridge_canonical", |b| {
        b.iter(|| parse_validate_merge(&admission, &current, black_box(&single)));
    });
    group.throughput(Throughput::Elements(10));
    group.bench_function("sqs_batch_10_canonical", |b| {
        b.iter(|| parse_validate_merge(&admission, &current, black_box(&canonical_batch)));
    });
    group.bench_function("sqs_batch_10_mixed", |b| {
        b.iter(|| parse_validate_merge(&admission, &current, black_box(mixed_bytes)));
    });
    group.finish();

    let mut group = c.benchmark_group("read_invocation");
    group.throughput(Throughput::Elements(10));
    group.bench_function("sqs_batch_10_mixed", |b| {
        b.iter(|| read_invocation(black_box(&mixed)).expect("a known envelope"));
    });
    group.finish();

    let documents: Vec<ChangeDocument> = records(read_invocation(&mixed).expect("envelope"))
        .into_iter()
        .map(|r| r.document.expect("a change document"))
        .collect();
    let mut group = c.benchmark_group("admit");
    group.throughput(Throughput::Elements(1));
    group.bench_function("canonical_all_fields", |b| {
        b.iter_batched(
            || documents[0].clone(),
            |d| admission.admit(d).expect("admitted"),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("scim_user", |b| {
        b.iter_batched(
            || documents[2].clone(),
            |d| admission.admit(d).expect("admitted"),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    let change = admission
        .admit(documents[0].clone())
        .expect("admitted")
        .change;
    let mut group = c.benchmark_group("apply_to");
    group.throughput(Throughput::Elements(1));
    group.bench_function("all_fields", |b| {
        b.iter(|| black_box(&change).apply_to(black_box(&current)));
    });
    group.finish();
}

criterion_group!(pipeline, benches);
criterion_main!(pipeline);
