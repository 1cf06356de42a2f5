//! Properties of what arrives (SPEC §2, §2.3 steps 1–3): whatever the payload, reading
//! it never panics and always ends in a classified outcome, SQS bodies are kept byte
//! for byte for the dead-letter queues, and admission of any document that was read
//! only ever refuses it as `MalformedEvent`, `PolicyViolation` or `ValidationError`.
//!
//! Each property runs a fixed number of cases and prints how many ran
//! (`cargo test --test inbound_properties -- --nocapture`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use connect_identity_sync::domain::document::{Admission, ChangeDocument, DEFAULT_MAX_CLOCK_SKEW};
use connect_identity_sync::domain::error::{ErrorClass, Failure};
use connect_identity_sync::domain::identity::InstanceId;
use connect_identity_sync::domain::policy::{EmailDomains, Policy};
use connect_identity_sync::domain::record::Record;
use connect_identity_sync::inbound::{Invocation, read_invocation};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRunner};
use serde_json::{Map, Value, json};

/// Cases per property.
const CASES: u32 = 2000;

const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const I1: &str = "11111111-2222-3333-4444-555555555555";
const I2: &str = "99999999-2222-3333-4444-555555555555";
const USER_ARN: &str = "arn:aws:connect:us-east-1:123456789012:instance/99999999-2222-3333-4444-555555555555/agent/u-1";

/// Marks personal data in generated values: no failure message may ever contain it
/// (messages hold field names and ids, never values; keys are echoed only as ASCII).
const PII: char = '¤';

/// Keys that mean something to an envelope or a document, so that random objects
/// often look like one.
const KEYS: &[&str] = &[
    "Records",
    "eventSource",
    "eventSourceARN",
    "body",
    "messageId",
    "attributes",
    "ApproximateReceiveCount",
    "SentTimestamp",
    "MessageGroupId",
    "detail",
    "detail-type",
    "source",
    "id",
    "time",
    "version",
    "UserId",
    "Username",
    "InstanceId",
    "IdentityInfo",
    "FirstName",
    "LastName",
    "Email",
    "SecondaryEmail",
    "Mobile",
    "EventId",
    "OccurredAt",
    "schemas",
    "userName",
    "emails",
    "phoneNumbers",
    "name",
    "givenName",
    "familyName",
    "formatted",
    "value",
    "type",
    "primary",
    "active",
    "meta",
    "lastModified",
    "Operations",
    "op",
    "path",
    ENTERPRISE,
];

/// String values that mean something somewhere.
const VALUES: &[&str] = &[
    "aws:sqs",
    "aws:sns",
    USER_SCHEMA,
    PATCH_SCHEMA,
    ENTERPRISE,
    "2026-11-29T08:00:00Z",
    "2026-11-29T08:00:00+01:00",
    "2026-11-29T08:00:00",
    "yesterday",
    "1764403200000",
    "-1",
    "99999999999999999999",
    "3",
    I1,
    I2,
    USER_ARN,
    "arn:aws:connect:us-east-1:123456789012:instance/11111111-2222-3333-4444-555555555555",
    "arn:aws:connect:::instance//agent/",
    "arn:aws:sqs:us-east-1:123456789012:changes.fifo",
    "u-1",
    "work",
    "home",
    "mobile",
    "Work",
    "true",
    "True",
    "false",
    "",
    "   ",
    "+1 206 555 0199",
    "(206) 555-0199",
    "tel:+1-206-555-0199",
    "tel:03-331-6005;phone-context=+64",
    "00442071838750",
    "+",
    "+0",
    "jane.doe@example.com",
    "jane@EXAMPLE.com",
    "Ja¤ne",
    "j¤@example.com",
    "+1 206 555 ¤",
    "Do\u{0301}e",
    "com.okta",
    "UserUpdated",
];

/// A string strategy compiled once (a `&str` pattern is compiled for every value).
fn regex(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).expect("a valid pattern")
}

/// Any short string of printable characters from all of Unicode, compiled once.
fn unicode() -> proptest::string::RegexGeneratorStrategy<String> {
    regex("\\PC{0,40}")
}

/// Strategies are built once per thread and shared: building one compiles its
/// regular expressions, which would otherwise take most of the run time.
macro_rules! shared {
    ($(#[$doc:meta])* fn $name:ident() -> $t:ty $body:block) => {
        $(#[$doc])*
        fn $name() -> BoxedStrategy<$t> {
            thread_local! {
                static STRATEGY: BoxedStrategy<$t> = $body;
            }
            STRATEGY.with(Clone::clone)
        }
    };
}

shared! {
    fn string() -> String {
        prop_oneof![
            4 => select(VALUES).prop_map(str::to_owned),
            2 => unicode(),
            1 => regex("[0-9+()\\-. ]{0,24}"),
            1 => regex("[a-z.%+-]{0,12}@[a-z.-]{0,10}\\.[a-z]{0,4}"),
            // Around Connect's name limits (255 and 300 characters).
            1 => regex("[a-zA-Z éøßÅ·ʼ¤-]{250,310}"),
        ]
        .boxed()
    }
}

shared! {
    fn key() -> String {
        prop_oneof![
            4 => select(KEYS).prop_map(str::to_owned),
            1 => regex("[a-zA-Z_-]{0,10}"),
            1 => unicode(),
        ]
        .boxed()
    }
}

shared! {
    fn leaf() -> Value {
        prop_oneof![
            1 => Just(Value::Null),
            1 => any::<bool>().prop_map(Value::Bool),
            1 => any::<i64>().prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => any::<f64>().prop_map(Value::from),
            3 => string().prop_map(Value::String),
        ]
        .boxed()
    }
}

shared! {
    /// Any JSON value, objects keyed mostly by meaningful keys.
    fn json() -> Value {
        leaf()
            .prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    1 => prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    2 => prop::collection::vec((key(), inner), 0..8)
                        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
                ]
            })
            .boxed()
    }
}

shared! {
    /// A value that is absent (`None`), `null`, a string, or now and then anything.
    fn field() -> Option<Value> {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(Value::Null)),
            8 => string().prop_map(|s| Some(Value::String(s))),
            1 => leaf().prop_map(Some),
        ]
        .boxed()
    }
}

/// Any JSON, but objects are often given the keys that make them a SCIM User or a
/// canonical document, so the readers see arbitrary values in every attribute.
fn seeded_json() -> BoxedStrategy<Value> {
    let seed = prop_oneof![
        Just(json!({})),
        Just(json!({"schemas": [USER_SCHEMA], "userName": "jdoe"})),
        Just(json!({"schemas": [USER_SCHEMA]})),
        Just(json!({"schemas": [PATCH_SCHEMA], "UserId": "u-1"})),
        Just(json!({"UserId": "u-1", "IdentityInfo": {}})),
        Just(json!({"Username": "jdoe"})),
    ];
    (json(), seed, prop::collection::vec((key(), json()), 0..6))
        .prop_map(|(doc, seed, extra)| {
            let Value::Object(seed) = seed else {
                return doc;
            };
            if seed.is_empty() {
                return doc;
            }
            let mut doc = match doc {
                Value::Object(doc) => doc,
                _ => Map::new(),
            };
            doc.extend(extra);
            doc.extend(seed);
            Value::Object(doc)
        })
        .boxed()
}

/// An optional member that is mostly absent or one of `good`, now and then anything,
/// so that structured documents are often readable and admission gets to see them.
fn mostly(good: &'static [&'static str]) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        6 => Just(None),
        3 => select(good).prop_map(|g| Some(Value::from(g))),
        1 => field(),
    ]
    .boxed()
}

const TIMES: &[&str] = &[
    "2026-11-29T08:00:00Z",
    "2026-11-29T08:00:00.123+01:00",
    "1970-01-01T00:00:00Z",
];

fn object(members: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        members
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

fn canonical() -> BoxedStrategy<Value> {
    let identity = (field(), field(), field(), field(), field()).prop_map(|(f, l, e, s, m)| {
        object(vec![
            ("FirstName", f),
            ("LastName", l),
            ("Email", e),
            ("SecondaryEmail", s),
            ("Mobile", m),
        ])
    });
    (
        field(),
        field(),
        identity,
        mostly(&[I1, I2]),
        mostly(&["ev-1"]),
        mostly(TIMES),
        prop::option::weighted(0.7, select(vec![I1, I2, USER_ARN, "u-1"])),
    )
        .prop_map(|(user_id, username, info, instance, event, at, known)| {
            object(vec![
                ("UserId", known.map(Value::from).or(user_id)),
                ("Username", username),
                ("IdentityInfo", Some(info)),
                ("InstanceId", instance),
                ("EventId", event),
                ("OccurredAt", at),
            ])
        })
        .boxed()
}

fn scim_entry() -> BoxedStrategy<Value> {
    let kind = prop_oneof![
        select(vec!["work", "home", "mobile", "other", "Work", "MOBILE"])
            .prop_map(|k| Some(Value::from(k))),
        field(),
    ];
    let primary = prop_oneof![
        8 => Just(None),
        4 => any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        2 => select(vec!["true", "false", "True", "yes"]).prop_map(|p| Some(Value::from(p))),
        1 => leaf().prop_map(Some),
    ];
    prop_oneof![
        15 => (field(), kind, primary).prop_map(|(value, kind, primary)| {
            object(vec![("value", value), ("type", kind), ("primary", primary)])
        }),
        1 => leaf(),
    ]
    .boxed()
}

fn scim() -> BoxedStrategy<Value> {
    let name = prop_oneof![
        4 => (field(), field(), field()).prop_map(|(g, f, full)| {
            Some(object(vec![("givenName", g), ("familyName", f), ("formatted", full)]))
        }),
        1 => field(),
    ];
    let list = || {
        prop_oneof![
            4 => prop::collection::vec(scim_entry(), 0..5).prop_map(|l| Some(Value::Array(l))),
            1 => field(),
        ]
    };
    let schemas = prop_oneof![
        Just(json!([USER_SCHEMA])),
        Just(json!([USER_SCHEMA, ENTERPRISE])),
    ];
    let active = prop_oneof![
        Just(None),
        any::<bool>().prop_map(|b| Some(Value::Bool(b))),
        leaf().prop_map(Some),
    ];
    let meta = prop_oneof![
        Just(None),
        mostly(TIMES).prop_map(|at| Some(object(vec![("lastModified", at)]))),
        leaf().prop_map(Some),
    ];
    let user_name = prop_oneof![
        6 => string().prop_map(|s| Some(Value::String(s))),
        1 => field(),
    ];
    (
        schemas,
        user_name,
        name,
        list(),
        list(),
        active,
        meta,
        prop::option::of(json()),
    )
        .prop_map(
            |(schemas, user_name, name, emails, phones, active, meta, extension)| {
                object(vec![
                    ("schemas", Some(schemas)),
                    ("userName", user_name),
                    ("name", name),
                    ("emails", emails),
                    ("phoneNumbers", phones),
                    ("active", active),
                    ("meta", meta),
                    (ENTERPRISE, extension),
                ])
            },
        )
        .boxed()
}

shared! {
    /// A PatchOp `path`: made of the grammar's pieces (schema prefix, attribute,
    /// filter, sub-attribute), each now and then wrong, or any text.
    fn patch_path() -> String {
        let prefix = prefix_strategy();
        let attr = prop_oneof![
            6 => select(vec![
                "name", "emails", "phoneNumbers", "Emails", "PHONENUMBERS", "active",
                "title", "displayName", "userName", "addresses", "members", "Name",
            ])
            .prop_map(str::to_owned),
            1 => regex("[a-zA-Z0-9_\\-]{0,8}"),
        ];
        let literal = prop_oneof![
            select(vec![
                "\"work\"", "\"Work\"", "\"mobile\"", "\"home\"", "\"j¤@example.com\"",
                "true", "false", "True", "\"True\"", "\"False\"", "null", "42", "-1.5e3",
                "work", "\"unclosed", "\"a\\\"b\"", "",
            ])
            .prop_map(str::to_owned),
            regex("\"[a-z¤ ]{0,6}\""),
        ];
        let filter = prop_oneof![
            3 => Just(String::new()),
            4 => (
                select(vec!["type", "primary", "Type", "value", "display", "", "9x"]),
                select(vec![" eq ", " EQ ", " ne ", " co ", " pr", "  eq  ", "eq", " and "]),
                literal,
                select(vec!["]", "]", "]", "", " and primary eq true]"]),
            )
                .prop_map(|(a, op, v, close)| format!("[{a}{op}{v}{close}")),
        ];
        let sub = prop_oneof![
            3 => Just(String::new()),
            4 => select(vec![
                ".value", ".givenName", ".familyName", ".GivenName", ".formatted",
                ".primary", ".type", ".display", ".", ".value.x",
            ])
            .prop_map(str::to_owned),
        ];
        prop_oneof![
            8 => (prefix, attr, filter, sub)
                .prop_map(|(p, a, f, s)| format!("{p}{a}{f}{s}")),
            1 => unicode(),
            1 => string(),
        ]
        .boxed()
    }
}

fn prefix_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        1 => Just(format!("{USER_SCHEMA}:")),
        1 => Just(format!("{ENTERPRISE}:")),
        1 => Just("urn:".to_owned()),
    ]
}

shared! {
    /// A PatchOp operation's `value`: strings, objects whose keys are paths, arrays of
    /// emails or phone numbers, name objects, or anything.
    fn patch_value() -> Option<Value> {
        let entries = prop::collection::vec(scim_entry(), 0..4).prop_map(Value::Array);
        let name = (field(), field()).prop_map(|(g, f)| {
            object(vec![("givenName", g), ("familyName", f)])
        });
        let keyed = prop::collection::vec(
            (patch_path(), prop_oneof![
                3 => string().prop_map(Value::String),
                1 => leaf(),
                1 => prop::collection::vec(scim_entry(), 0..3).prop_map(Value::Array),
                1 => (field(), field()).prop_map(|(g, f)| {
                    object(vec![("givenName", g), ("familyName", f)])
                }),
            ]),
            0..5,
        )
        .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>()));
        prop_oneof![
            2 => Just(None),
            6 => string().prop_map(|s| Some(Value::String(s))),
            2 => entries.prop_map(Some),
            2 => name.prop_map(Some),
            3 => keyed.prop_map(Some),
            2 => leaf().prop_map(Some),
            1 => json().prop_map(Some),
        ]
        .boxed()
    }
}

fn patch_operation() -> BoxedStrategy<Value> {
    let op = prop_oneof![
        8 => select(vec!["add", "replace", "remove", "Add", "Replace", "Remove", "REPLACE"])
            .prop_map(|o| Some(Value::from(o))),
        1 => field(),
    ];
    let path = prop_oneof![
        2 => Just(None),
        8 => patch_path().prop_map(|p| Some(Value::String(p))),
        1 => leaf().prop_map(Some),
    ];
    // Operations of the forms that are read, so that many messages get past the reader.
    let readable = (
        select(vec!["add", "Replace", "remove"]),
        select(vec![
            "name.givenName",
            "name.familyName",
            "emails[type eq \"work\"].value",
            "emails[primary eq true].value",
            "emails[type eq \"home\"].value",
            "phoneNumbers[type eq \"mobile\"].value",
            "active",
            "title",
        ]),
        string(),
    )
        .prop_map(|(op, path, value)| json!({"op": op, "path": path, "value": value}));
    prop_oneof![
        10 => readable,
        10 => (op, path, patch_value())
            .prop_map(|(op, path, value)| object(vec![("op", op), ("path", path), ("value", value)])),
        1 => json(),
    ]
    .boxed()
}

/// A SCIM PatchOp message naming its user beside `Operations`.
fn patch_op() -> BoxedStrategy<Value> {
    let operations = prop_oneof![
        12 => prop::collection::vec(patch_operation(), 0..4).prop_map(|o| Some(Value::Array(o))),
        1 => field(),
    ];
    let user = prop_oneof![
        6 => select(vec!["u-1", USER_ARN]).prop_map(|u| ("UserId", Some(Value::from(u)))),
        3 => select(vec!["jdoe", "j¤doe"]).prop_map(|u| ("Username", Some(Value::from(u)))),
        1 => field().prop_map(|f| ("UserId", f)),
    ];
    (
        operations,
        user,
        mostly(&[I1, I2]),
        mostly(&["ev-1"]),
        mostly(TIMES),
    )
        .prop_map(|(operations, (user_key, user), instance, event, at)| {
            object(vec![
                ("schemas", Some(json!([PATCH_SCHEMA]))),
                (user_key, user),
                ("Operations", operations),
                ("InstanceId", instance),
                ("EventId", event),
                ("OccurredAt", at),
            ])
        })
        .boxed()
}

fn eventbridge(detail: Value, id: Option<Value>, time: Option<Value>, source: Value) -> Value {
    object(vec![
        ("version", Some(json!("0"))),
        ("id", id),
        ("detail-type", Some(json!("UserUpdated"))),
        ("source", Some(source)),
        ("account", Some(json!("123456789012"))),
        ("time", time),
        ("region", Some(json!("us-east-1"))),
        ("resources", Some(json!([]))),
        ("detail", Some(detail)),
    ])
}

/// A change document, bare or inside an EventBridge event.
fn document() -> BoxedStrategy<(Value, bool)> {
    let doc = prop_oneof![2 => canonical(), 2 => scim(), 2 => patch_op(), 1 => json()];
    let id = prop_oneof![4 => Just(Some(json!("ev-1"))), 1 => field()];
    let source = prop_oneof![4 => Just("com.okta".to_owned()), 1 => string()];
    (doc, any::<bool>(), id, mostly(TIMES), source)
        .prop_map(|(doc, wrap, id, time, source)| {
            if wrap {
                (eventbridge(doc, id, time, Value::String(source)), true)
            } else {
                (doc, false)
            }
        })
        .boxed()
}

fn sqs_record(body: Value, id: Option<Value>, fifo: bool, attributes: Value) -> Value {
    let arn = if fifo {
        "arn:aws:sqs:us-east-1:123456789012:changes.fifo"
    } else {
        "arn:aws:sqs:us-east-1:123456789012:changes"
    };
    object(vec![
        ("messageId", id),
        ("receiptHandle", Some(json!("handle"))),
        ("body", Some(body)),
        ("attributes", Some(attributes)),
        ("messageAttributes", Some(json!({}))),
        ("md5OfBody", Some(json!(""))),
        ("eventSource", Some(json!("aws:sqs"))),
        ("eventSourceARN", Some(json!(arn))),
        ("awsRegion", Some(json!("us-east-1"))),
    ])
}

fn attributes() -> BoxedStrategy<Value> {
    (field(), field(), field())
        .prop_map(|(count, sent, group)| {
            object(vec![
                ("ApproximateReceiveCount", count),
                ("SentTimestamp", sent),
                ("MessageGroupId", group),
            ])
        })
        .boxed()
}

/// One change to a value tree: `path` picks a node (each step an index into the
/// members of an object or the items of an array, taken modulo their number).
#[derive(Debug, Clone)]
enum Mutation {
    Remove(Vec<usize>),
    Replace(Vec<usize>, Value),
    Insert(Vec<usize>, String, Value),
}

fn mutation() -> BoxedStrategy<Mutation> {
    let path = || prop::collection::vec(any::<usize>(), 0..5);
    prop_oneof![
        path().prop_map(Mutation::Remove),
        (path(), json()).prop_map(|(p, v)| Mutation::Replace(p, v)),
        (path(), key(), json()).prop_map(|(p, k, v)| Mutation::Insert(p, k, v)),
    ]
    .boxed()
}

/// Mostly none, so that many damaged invocations still hold readable documents.
fn mutations() -> BoxedStrategy<Vec<Mutation>> {
    prop_oneof![
        2 => Just(Vec::new()),
        1 => prop::collection::vec(mutation(), 1..3),
    ]
    .boxed()
}

fn child(v: &mut Value, step: usize) -> Option<(&mut Value, usize)> {
    match v {
        Value::Object(m) if !m.is_empty() => {
            let i = step % m.len();
            m.values_mut().nth(i).map(|c| (c, i))
        }
        Value::Array(a) if !a.is_empty() => {
            let i = step % a.len();
            a.get_mut(i).map(|c| (c, i))
        }
        _ => None,
    }
}

fn apply(v: &mut Value, m: &Mutation) {
    let path = match m {
        Mutation::Remove(p) | Mutation::Replace(p, _) | Mutation::Insert(p, _, _) => p,
    };
    let mut node = v;
    for (n, step) in path.iter().enumerate() {
        if n + 1 == path.len()
            && let Mutation::Remove(_) = m
        {
            match node {
                Value::Object(o) if !o.is_empty() => {
                    let k = o.keys().nth(step % o.len()).cloned().unwrap_or_default();
                    o.remove(&k);
                    return;
                }
                Value::Array(a) if !a.is_empty() => {
                    let i = step % a.len();
                    a.remove(i);
                    return;
                }
                _ => break,
            }
        }
        if child(node, *step).is_none() {
            break;
        }
        node = child(node, *step).expect("checked").0;
    }
    match m {
        Mutation::Remove(_) => *node = Value::Null,
        Mutation::Replace(_, new) => *node = new.clone(),
        Mutation::Insert(_, k, new) => {
            if let Value::Object(o) = node {
                o.insert(k.clone(), new.clone());
            } else {
                *node = new.clone();
            }
        }
    }
}

/// How a body reaches the queue: whole, cut short, or with bytes flipped.
#[derive(Debug, Clone)]
enum BodyDamage {
    None,
    Truncate(usize),
    Flip(usize, u8),
}

fn damage() -> BoxedStrategy<BodyDamage> {
    prop_oneof![
        6 => Just(BodyDamage::None),
        1 => any::<usize>().prop_map(BodyDamage::Truncate),
        1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| BodyDamage::Flip(i, b)),
    ]
    .boxed()
}

fn damaged(text: String, damage: &BodyDamage) -> String {
    match *damage {
        BodyDamage::None => text,
        BodyDamage::Truncate(at) => {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text[..at].to_owned()
        }
        BodyDamage::Flip(at, byte) => {
            let mut bytes = text.into_bytes();
            if !bytes.is_empty() {
                let i = at % bytes.len();
                bytes[i] = byte;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

/// A structured invocation, then damaged: documents mutated before they are
/// serialised, bodies cut or flipped, and the envelope itself mutated.
fn mutated_invocation() -> BoxedStrategy<Value> {
    let record = (document(), mutations(), damage(), field(), attributes());
    (
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(record, 1..5),
        mutations(),
    )
        .prop_map(|(direct, fifo, records, envelope_mutations)| {
            let mut payload = if direct {
                let ((mut doc, wrapped), mutations, _, id, _) = records[0].clone();
                for m in &mutations {
                    apply(&mut doc, m);
                }
                if wrapped {
                    doc
                } else {
                    eventbridge(doc, id, None, json!("com.okta"))
                }
            } else {
                let records = records
                    .into_iter()
                    .enumerate()
                    .map(|(n, ((mut doc, _), mutations, damage, id, attributes))| {
                        for m in &mutations {
                            apply(&mut doc, m);
                        }
                        let body = damaged(doc.to_string(), &damage);
                        let id = id.or_else(|| Some(Value::String(format!("m-{n}"))));
                        sqs_record(Value::String(body), id, fifo, attributes)
                    })
                    .collect();
                json!({ "Records": Value::Array(records) })
            };
            for m in &envelope_mutations {
                apply(&mut payload, m);
            }
            payload
        })
        .boxed()
}

fn admissions() -> Vec<Admission> {
    let instance = |s: &str| InstanceId::parse(s).expect("a valid instance id");
    let permissive = Admission {
        policy: Policy {
            allowed_instances: [instance(I1), instance(I2)].into(),
            email_domains: EmailDomains::Any,
            secondary_email_domains: EmailDomains::Any,
            protected_profiles: Default::default(),
            trusted_sources: None,
        },
        default_instance: Some(instance(I1)),
        phone_region: Some("US".parse().expect("a region")),
        max_clock_skew: DEFAULT_MAX_CLOCK_SKEW,
    };
    let without_defaults = Admission {
        default_instance: None,
        phone_region: None,
        ..permissive.clone()
    };
    vec![permissive, without_defaults]
}

fn check_failure(f: &Failure, allowed: &[ErrorClass]) -> Result<(), TestCaseError> {
    prop_assert!(
        allowed.contains(&f.class),
        "class {} not among {:?}: {}",
        f.class,
        allowed,
        f.message
    );
    prop_assert!(!f.message.is_empty(), "an empty message");
    prop_assert!(f.message.len() <= 1024, "a message over 1024 bytes");
    prop_assert!(
        !f.message.contains(PII),
        "a message repeats a value: {:?}",
        f.message
    );
    Ok(())
}

fn check_document(
    doc: &Result<ChangeDocument, Failure>,
    admissions: &[Admission],
) -> Result<(), TestCaseError> {
    tally(|t| t.documents += 1);
    match doc {
        Err(f) => check_failure(f, &[ErrorClass::MalformedEvent]),
        Ok(doc) => {
            tally(|t| t.read += 1);
            for admission in admissions {
                let admitted = admission.admit(doc.clone());
                tally(|t| t.admitted += usize::from(admitted.is_ok()));
                if let Err(f) = admitted {
                    tally(|t| *t.refused.entry(f.class.as_str()).or_default() += 1);
                    check_failure(
                        &f,
                        &[
                            ErrorClass::MalformedEvent,
                            ErrorClass::PolicyViolation,
                            ErrorClass::ValidationError,
                        ],
                    )?;
                }
            }
            Ok(())
        }
    }
}

fn check_record(
    record: &Record,
    raw: Option<&Value>,
    admissions: &[Admission],
) -> Result<(), TestCaseError> {
    if let Some(raw) = raw {
        match raw
            .get("body")
            .and_then(Value::as_str)
            .filter(|b| !b.is_empty())
        {
            Some(sent) => prop_assert_eq!(
                record.body.as_bytes(),
                sent.as_bytes(),
                "the body is not kept byte for byte"
            ),
            // SQS takes no empty message: without a body the whole record is kept.
            None => {
                let kept: Value = serde_json::from_str(&record.body).map_err(|e| {
                    TestCaseError::fail(format!("the record is not kept as JSON: {e}"))
                })?;
                prop_assert!(same_content(&kept, raw), "the record is not kept whole");
                prop_assert!(
                    record.document.is_err(),
                    "a record without a body has no document"
                );
            }
        }
    }
    check_document(&record.document, admissions)
}

/// JSON equality, except that a float may come back a few units in the last place off:
/// the body is written in the shortest form that reads back exactly, but serde_json's
/// default parser (without `float_roundtrip`) may round such text to a neighbour when
/// this test reads it back.
fn same_content(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() && y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
            x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs())
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_content(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_content(v, w)))
        }
        _ => a == b,
    }
}

/// Reads a payload from its JSON text, as the runtime hands it over.
fn read_payload(payload: &Value) -> Result<Invocation, Failure> {
    read_invocation(&serde_json::value::to_raw_value(payload).expect("JSON"))
}

/// The whole property: a classified outcome for the payload and each record.
fn check_payload(payload: &Value, admissions: &[Admission]) -> Result<(), TestCaseError> {
    match read_payload(payload) {
        Err(f) => check_failure(&f, &[ErrorClass::MalformedEvent]),
        Ok(Invocation::Sqs { records, .. }) => {
            let raw = payload
                .get("Records")
                .and_then(Value::as_array)
                .ok_or_else(|| TestCaseError::fail("an SQS invocation without Records"))?;
            prop_assert_eq!(records.len(), raw.len(), "records lost or added");
            for (record, raw) in records.iter().zip(raw) {
                check_record(record, Some(raw), admissions)?;
            }
            Ok(())
        }
        Ok(Invocation::EventBridge(record)) => {
            let body: Value = serde_json::from_str(&record.body)
                .map_err(|e| TestCaseError::fail(format!("the event body is not JSON: {e}")))?;
            prop_assert!(
                same_content(&body, payload),
                "the event body differs from the event: {body} vs {payload}"
            );
            check_record(&record, None, admissions)
        }
    }
}

/// What the cases of one property reached, to show the generators get past the
/// envelope and the document reader.
#[derive(Debug, Default)]
struct Tally {
    documents: usize,
    read: usize,
    admitted: usize,
    refused: BTreeMap<&'static str, usize>,
}

thread_local! {
    /// Each test runs on a thread of its own.
    static TALLY: RefCell<Tally> = RefCell::default();
}

fn tally(f: impl FnOnce(&mut Tally)) {
    TALLY.with(|t| f(&mut t.borrow_mut()));
}

/// Runs `CASES` cases of `property`, prints how many ran and fails on the first
/// (shrunk) counterexample.
fn run<S: Strategy>(
    name: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let counter = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        // ChaCha dominates the run time in a debug build; XorShift is ample here.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    });
    let result = runner.run(&strategy, |value| {
        counter.fetch_add(1, Ordering::Relaxed);
        property(value)
    });
    let t = TALLY.take();
    println!(
        "{name}: {} cases ran ({CASES} configured); {} records, {} documents read, \
         {} admissions passed, refused by class {:?}",
        counter.load(Ordering::Relaxed),
        t.documents,
        t.read,
        t.admitted,
        t.refused
    );
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn any_json_payload_gets_a_classified_outcome() {
    let admissions = admissions();
    run("any_json_payload", json(), |payload| {
        check_payload(&payload, &admissions)
    });
}

#[test]
fn any_json_document_in_any_envelope_gets_a_classified_outcome() {
    let admissions = admissions();
    let strategy = (seeded_json(), 0..3_u8, field(), field());
    run(
        "any_json_document_in_an_envelope",
        strategy,
        |(doc, how, id, time)| {
            let payload = match how {
                0 => eventbridge(doc, id, time, json!("com.okta")),
                1 => json!({"Records": [
                    sqs_record(Value::String(doc.to_string()), Some(json!("m-1")), false, json!({}))
                ]}),
                _ => {
                    let event = eventbridge(doc, id, time, json!("com.okta"));
                    json!({"Records": [
                        sqs_record(Value::String(event.to_string()), Some(json!("m-1")), true, json!({}))
                    ]})
                }
            };
            check_payload(&payload, &admissions)
        },
    );
}

#[test]
fn any_bytes_as_sqs_bodies_are_kept_and_classified() {
    let admissions = admissions();
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        (document(), damage()).prop_map(|((doc, _), d)| damaged(doc.to_string(), &d)),
        unicode(),
    ];
    run(
        "any_bytes_as_sqs_bodies",
        prop::collection::vec((body, attributes()), 1..6),
        |bodies| {
            let records: Vec<Value> = bodies
                .into_iter()
                .enumerate()
                .map(|(n, (body, attributes))| {
                    sqs_record(
                        Value::String(body),
                        Some(json!(format!("m-{n}"))),
                        n % 2 == 0,
                        attributes,
                    )
                })
                .collect();
            let payload = json!({ "Records": records });
            prop_assert!(
                matches!(read_payload(&payload), Ok(Invocation::Sqs { .. })),
                "a well-formed SQS event is read as one"
            );
            check_payload(&payload, &admissions)
        },
    );
}

#[test]
fn mutated_sqs_and_eventbridge_envelopes_get_a_classified_outcome() {
    let admissions = admissions();
    run("mutated_envelopes", mutated_invocation(), |payload| {
        check_payload(&payload, &admissions)
    });
}

#[test]
fn any_patch_op_document_in_any_envelope_gets_a_classified_outcome() {
    let admissions = admissions();
    let strategy = (patch_op(), 0..3_u8);
    run("any_patch_op_document", strategy, |(doc, how)| {
        let payload = match how {
            0 => eventbridge(doc, Some(json!("ev-1")), None, json!("com.okta")),
            1 => json!({"Records": [
                sqs_record(Value::String(doc.to_string()), Some(json!("m-1")), false, json!({}))
            ]}),
            _ => {
                let event = eventbridge(doc, Some(json!("ev-1")), None, json!("com.okta"));
                json!({"Records": [
                    sqs_record(Value::String(event.to_string()), Some(json!("m-1")), true, json!({}))
                ]})
            }
        };
        check_payload(&payload, &admissions)
    });
}

#[test]
fn patch_op_documents_are_often_read_and_often_change_a_field() {
    // Guards the PatchOp generator: it must reach both readable messages that change
    // a field (so admission and the operations' mapping are exercised) and refusals.
    let (mut ran, mut read, mut changing, mut refused) = (0, 0, 0, 0);
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    });
    let strategy = patch_op();
    for _ in 0..500 {
        let doc = strategy.new_tree(&mut runner).expect("a value").current();
        ran += 1;
        match connect_identity_sync::inbound::read_document(&doc, Default::default()) {
            Ok(doc) => {
                read += 1;
                changing += usize::from(doc.identity != Default::default());
            }
            Err(_) => refused += 1,
        }
    }
    println!(
        "patch_op_documents: {ran} cases, {read} read ({changing} changing a field), {refused} refused"
    );
    assert!(
        read * 5 >= ran,
        "only {read} of {ran} PatchOp documents were read"
    );
    assert!(
        changing * 10 >= ran,
        "only {changing} of {ran} changed a field"
    );
    assert!(refused * 10 >= ran, "only {refused} of {ran} were refused");
}

#[test]
fn structured_documents_are_mostly_read_so_admission_is_exercised() {
    // Guards the generators: if they stopped producing readable documents, the
    // admission half of the properties above would test nothing.
    let counter = AtomicUsize::new(0);
    let read = AtomicUsize::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 500,
        failure_persistence: None,
        // ChaCha dominates the run time in a debug build; XorShift is ample here.
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    });
    let strategy = prop_oneof![canonical(), scim(), patch_op()];
    runner
        .run(&strategy, |doc| {
            counter.fetch_add(1, Ordering::Relaxed);
            let payload = eventbridge(doc, Some(json!("ev-1")), None, json!("com.okta"));
            if let Ok(Invocation::EventBridge(record)) = read_payload(&payload)
                && record.document.is_ok()
            {
                read.fetch_add(1, Ordering::Relaxed);
            }
            Ok(())
        })
        .expect("never fails");
    let (ran, read) = (
        counter.load(Ordering::Relaxed),
        read.load(Ordering::Relaxed),
    );
    println!("structured_documents: {ran} cases ran, {read} documents read");
    assert!(read * 5 >= ran, "only {read} of {ran} documents were read");
}
