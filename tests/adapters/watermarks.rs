//! The watermark adapter (`DynamoWatermarks`) against moto's DynamoDB over HTTP: a
//! lease refuses a second one until it is released or lapses, watermarks written at
//! release are read by the next lease and never move backwards, the item's expiry
//! follows the configured retention, and a missing table or an unreachable endpoint is
//! `UnknownError`. Throttling, which moto cannot produce, is checked against a mocked
//! client (`aws-smithy-mocks`).

use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::error::{
    ProvisionedThroughputExceededException, RequestLimitExceeded, ThrottlingException,
};
use aws_smithy_mocks::{MockResponseInterceptor, RuleMode, create_mock_http_client, mock};
use chrono::{DateTime, TimeDelta, Utc};
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{Field, InstanceId, UserId};
use connect_identity_sync::domain::ports::{CallFailure, Watermarks};
use connect_identity_sync::domain::watermark::FieldWatermarks;
use connect_identity_sync::outbound::watermarks::DynamoWatermarks;
use harness::{LossyProxy, Moto, WATERMARK_TABLE};

const INSTANCE: &str = "8d3c2b1a-1111-4a4a-9b9b-0123456789ab";
const USER: &str = "f0e1d2c3-3333-4b4b-8c8c-ba9876543210";
const OTHER_USER: &str = "f0e1d2c3-4444-4b4b-8c8c-ba9876543210";
pub(crate) const RETENTION: Duration = Duration::from_secs(28 * 86_400);

fn instance() -> InstanceId {
    InstanceId::parse(INSTANCE).unwrap()
}

fn user(id: &str) -> UserId {
    UserId::parse(id).unwrap()
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn soon() -> DateTime<Utc> {
    Utc::now() + TimeDelta::seconds(30)
}

/// A DynamoDB client for `endpoint` that does not retry (shared with the schedule's tests).
pub(crate) fn client(endpoint: &str) -> Client {
    client_with(endpoint, RetryConfig::disabled())
}

fn client_with(endpoint: &str, retry: RetryConfig) -> Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .endpoint_url(endpoint)
        .retry_config(retry)
        .build();
    Client::from_conf(config)
}

struct Table {
    moto: Moto,
    store: DynamoWatermarks,
}

/// moto with the watermark table created (shared with the schedule's tests).
pub(crate) async fn moto_with_table() -> Moto {
    let moto = Moto::start().await.expect("moto");
    moto.dynamo()
        .await
        .create_watermark_table(WATERMARK_TABLE)
        .await
        .expect("table");
    moto
}

async fn table() -> Table {
    let moto = moto_with_table().await;
    let store = DynamoWatermarks::new(client(&moto.endpoint()), WATERMARK_TABLE, RETENTION);
    Table { moto, store }
}

/// The store on a port where nothing listens.
fn unreachable() -> DynamoWatermarks {
    let port = harness::moto::free_port().unwrap();
    DynamoWatermarks::new(
        client(&format!("http://127.0.0.1:{port}")),
        WATERMARK_TABLE,
        RETENTION,
    )
}

fn assert_unknown(result: Result<impl std::fmt::Debug, CallFailure>, says: &str) {
    let failure = result.expect_err("the guard must fail").failure;
    assert_eq!(failure.class, ErrorClass::UnknownError, "{failure:?}");
    assert!(failure.message.contains(says), "{failure:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_on_a_user_refuses_a_second_one_until_it_is_released() {
    let db = table().await;
    let first = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("first lease")
        .expect("not leased elsewhere");
    assert!(first.watermarks.is_empty(), "a new user has no watermarks");
    assert_eq!(first.lease.key, format!("{INSTANCE}#{USER}"));

    assert_eq!(
        db.store
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default()
            )
            .await,
        Ok(None),
        "a second lease in the same container is refused"
    );
    // Another container (a second adapter) is refused just the same.
    let other = DynamoWatermarks::new(client(&db.moto.endpoint()), WATERMARK_TABLE, RETENTION);
    assert_eq!(
        other
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default()
            )
            .await,
        Ok(None)
    );
    // Other users are not blocked.
    let neighbour = db
        .store
        .acquire(
            &instance(),
            &user(OTHER_USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("another user's lease")
        .expect("not leased elsewhere");
    db.store.release(&neighbour.lease, None).await.unwrap();

    db.store.release(&first.lease, None).await.expect("release");
    let again = other
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("free once released")
        .expect("not leased elsewhere");
    other.release(&again.lease, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_whose_holder_died_lapses_and_the_holder_can_no_longer_write() {
    let db = table().await;
    let dead = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            Utc::now() + TimeDelta::milliseconds(300),
            &FieldWatermarks::default(),
        )
        .await
        .expect("lease")
        .expect("not leased elsewhere");
    assert_eq!(
        db.store
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default()
            )
            .await,
        Ok(None)
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("a lapsed lease is taken over")
        .expect("not leased elsewhere");

    let late = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:01Z"));
    assert_unknown(
        db.store.release(&dead.lease, Some(&late)).await,
        "the lease was no longer held",
    );
    let item = db
        .moto
        .dynamo()
        .await
        .item(WATERMARK_TABLE, &next.lease.key)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !item.contains_key("wm_LastName"),
        "the lapsed holder wrote nothing: {item:?}"
    );
    assert_eq!(item["lease_owner"], next.lease.owner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_written_at_release_are_read_by_the_next_lease_and_never_move_back() {
    let db = table().await;
    let lease = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("not leased elsewhere");
    let marks = FieldWatermarks::default()
        .with(Field::LastName, t("2026-01-01T10:00:05.123456789Z"))
        .with(Field::Mobile, t("2026-01-01T09:00:00Z"));
    db.store.release(&lease.lease, Some(&marks)).await.unwrap();

    let item = db
        .moto
        .dynamo()
        .await
        .item(WATERMARK_TABLE, &lease.lease.key)
        .await
        .unwrap()
        .unwrap();
    assert!(!item.contains_key("lease_owner"), "released: {item:?}");
    assert!(!item.contains_key("lease_until"), "released: {item:?}");
    let expires: i64 = item["expires_at"].parse().unwrap();
    let expected = (Utc::now() + TimeDelta::seconds(RETENTION.as_secs() as i64)).timestamp();
    assert!(
        (expected - expires).abs() < 60,
        "expiry {expires} is the retention after the last write ({expected})"
    );

    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("not leased elsewhere");
    assert_eq!(next.watermarks, marks, "nanoseconds survive the round trip");

    let backwards = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:01Z"));
    assert_unknown(
        db.store.release(&next.lease, Some(&backwards)).await,
        "writing the watermarks failed",
    );
    db.store.release(&next.lease, None).await.unwrap();
    let last = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("not leased elsewhere");
    assert_eq!(
        last.watermarks, marks,
        "the older watermark was not written"
    );
    db.store.release(&last.lease, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_table_is_an_unknown_error() {
    let moto = Moto::start().await.expect("moto");
    let store = DynamoWatermarks::new(client(&moto.endpoint()), "no-such-table", RETENTION);
    assert_unknown(
        store
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default(),
            )
            .await,
        "the table does not exist",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_table_is_an_unknown_error() {
    let store = unreachable();
    assert_unknown(
        store
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default(),
            )
            .await,
        "a connection failure",
    );
}

fn mocked(error: fn() -> UpdateItemError) -> DynamoWatermarks {
    let rule = mock!(Client::update_item).then_error(error);
    let mocks = MockResponseInterceptor::new()
        .rule_mode(RuleMode::MatchAny)
        .with_rule(&rule);
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .http_client(create_mock_http_client())
        .interceptor(mocks)
        .retry_config(RetryConfig::disabled())
        .build();
    DynamoWatermarks::new(Client::from_conf(config), WATERMARK_TABLE, RETENTION)
}

#[tokio::test]
async fn a_throttled_table_is_an_unknown_error_on_both_requests() {
    let throttles: [fn() -> UpdateItemError; 3] = [
        || {
            UpdateItemError::ProvisionedThroughputExceededException(
                ProvisionedThroughputExceededException::builder().build(),
            )
        },
        || UpdateItemError::RequestLimitExceeded(RequestLimitExceeded::builder().build()),
        || UpdateItemError::ThrottlingException(ThrottlingException::builder().build()),
    ];
    for throttle in throttles {
        let store = mocked(throttle);
        assert_unknown(
            store
                .acquire(
                    &instance(),
                    &user(USER),
                    soon(),
                    &FieldWatermarks::default(),
                )
                .await,
            "DynamoDB throttled the request",
        );
        let lease = connect_identity_sync::domain::ports::Lease {
            key: format!("{INSTANCE}#{USER}"),
            owner: "someone".into(),
            until: soon(),
            unsettled: Vec::new(),
        };
        assert_unknown(
            store.release(&lease, None).await,
            "DynamoDB throttled the request",
        );
    }
}

const UPDATE_ITEM: &str = "DynamoDB_20120810.UpdateItem";

/// An adapter whose client retries as the function's does, reaching moto through a proxy
/// that can lose replies.
async fn behind_a_lossy_proxy(db: &Table) -> (LossyProxy, DynamoWatermarks) {
    let upstream = db.moto.endpoint().trim_start_matches("http://").to_owned();
    let proxy = LossyProxy::start(upstream).await.expect("proxy");
    let retrying = client_with(
        &proxy.endpoint(),
        RetryConfig::standard()
            .with_max_attempts(3)
            .with_initial_backoff(Duration::from_millis(10)),
    );
    let store = DynamoWatermarks::new(retrying, WATERMARK_TABLE, RETENTION);
    (proxy, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_request_sent_again_after_its_reply_was_lost_gets_the_lease_it_took() {
    let db = table().await;
    let (proxy, store) = behind_a_lossy_proxy(&db).await;
    proxy.drop_replies(UPDATE_ITEM, 1);
    let leased = store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("the lease request")
        .expect("the caller is not locked out by its own first request");
    assert_eq!(proxy.marked_requests(), 2, "the SDK sent the request twice");
    // It is a real lease: others are refused until it is given back.
    assert_eq!(
        db.store
            .acquire(
                &instance(),
                &user(USER),
                soon(),
                &FieldWatermarks::default()
            )
            .await,
        Ok(None)
    );
    store.release(&leased.lease, None).await.expect("release");
    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("free once released");
    db.store.release(&next.lease, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_sent_again_after_its_reply_was_lost_succeeds_and_writes_once() {
    let db = table().await;
    let (proxy, store) = behind_a_lossy_proxy(&db).await;
    let leased = store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("lease");
    let marks = FieldWatermarks::default().with(Field::LastName, t("2026-01-01T10:00:05Z"));
    proxy.drop_replies(UPDATE_ITEM, 1);
    store
        .release(&leased.lease, Some(&marks))
        .await
        .expect("the second sending finds the lease given up by the first");
    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("free");
    assert_eq!(
        next.watermarks.get(Field::LastName),
        marks.get(Field::LastName)
    );
    // Once another lease is taken, the old release no longer passes.
    assert_unknown(
        store.release(&leased.lease, Some(&marks)).await,
        "the lease was no longer held",
    );
    db.store.release(&next.lease, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_ids_that_set_a_watermark_are_kept_with_it() {
    use connect_identity_sync::domain::change::Stamp;
    let db = table().await;
    let second = t("2026-01-01T10:00:05Z");
    let leased = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("lease");
    let marks = FieldWatermarks::default()
        .with_change(Field::Email, Stamp::new(Some(second), Some("ev-remove")))
        .with_change(Field::Email, Stamp::new(Some(second), Some("ev-add")));
    db.store.release(&leased.lease, Some(&marks)).await.unwrap();
    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .unwrap()
        .expect("lease");
    assert_eq!(next.watermarks, marks);
    assert_eq!(
        next.watermarks.mark(Field::Email).unwrap().events,
        vec!["ev-remove", "ev-add"]
    );
    db.store.release(&next.lease, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_intent_of_a_lease_never_released_is_read_by_the_next_until_watermarks_cover_it() {
    let db = table().await;
    let intent = FieldWatermarks::default()
        .with(Field::LastName, t("2026-11-29T10:00:09Z"))
        .with(Field::Email, t("2026-11-29T10:00:07Z"));
    // Taken with its intent, and never released (its release failed): it lapses.
    let lapsed = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            Utc::now() + TimeDelta::milliseconds(300),
            &intent,
        )
        .await
        .expect("lease")
        .expect("not leased elsewhere");
    assert!(lapsed.unsettled.is_empty());
    tokio::time::sleep(Duration::from_millis(400)).await;

    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default().with(Field::LastName, t("2026-11-29T10:00:05Z")),
        )
        .await
        .expect("lease")
        .expect("the lease lapsed");
    assert_eq!(
        next.unsettled, intent,
        "what the lapsed lease may have applied"
    );
    assert!(next.watermarks.is_empty(), "no watermark was written");
    // Released after a failure (nothing written): the unsettled intent stays.
    db.store.release(&next.lease, None).await.expect("released");

    let third = db
        .store
        .acquire(&instance(), &user(USER), soon(), &intent)
        .await
        .expect("lease")
        .expect("released");
    assert_eq!(third.unsettled, intent);
    // The change delivered again and found in place: its watermarks cover the intent,
    // which goes with the release.
    db.store
        .release(&third.lease, Some(&intent))
        .await
        .expect("released");
    let fourth = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("lease")
        .expect("released");
    assert!(fourth.unsettled.is_empty(), "{:?}", fourth.unsettled);
    assert_eq!(
        fourth.watermarks.get(Field::LastName),
        Some(t("2026-11-29T10:00:09Z"))
    );
    db.store
        .release(&fourth.lease, None)
        .await
        .expect("released");
    let item = db
        .moto
        .dynamo()
        .await
        .item(WATERMARK_TABLE, &format!("{INSTANCE}#{USER}"))
        .await
        .expect("read")
        .expect("item");
    assert!(
        item.keys().all(|k| !k.starts_with("intent_")),
        "no intent left: {:?}",
        item.keys().collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreleased_intent_is_read_with_the_event_ids_of_its_changes_of_each_fields_time() {
    use aws_sdk_dynamodb::types::AttributeValue;
    use connect_identity_sync::domain::change::Stamp;
    let db = table().await;
    let (older, newer) = (t("2026-11-29T10:00:05Z"), t("2026-11-29T10:00:09Z"));
    // The intent of a lease taken for three changes: two of one field at one time.
    let intent = FieldWatermarks::default()
        .with_change(Field::Email, Stamp::new(Some(older), Some("ev-old")))
        .with_change(Field::Email, Stamp::new(Some(newer), Some("ev-a")))
        .with_change(Field::Email, Stamp::new(Some(newer), Some("ev-b")))
        .with_change(Field::Mobile, Stamp::new(Some(older), Some("ev-old")));
    let lost = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            Utc::now() + TimeDelta::milliseconds(300),
            &intent,
        )
        .await
        .expect("lease")
        .expect("free");
    drop(lost);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let next = db
        .store
        .acquire(
            &instance(),
            &user(USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("lease")
        .expect("the lease lapsed");
    assert_eq!(next.unsettled, intent, "read back with its ids");
    assert_eq!(
        next.unsettled.mark(Field::Email).unwrap().events,
        vec!["ev-a", "ev-b"],
        "the ids of the changes of the field's newest time"
    );
    db.store.release(&next.lease, None).await.expect("released");

    // An intent stored as bare times (before the ids were kept) names no change.
    client(&db.moto.endpoint())
        .update_item()
        .table_name(WATERMARK_TABLE)
        .key("pk", AttributeValue::S(format!("{INSTANCE}#{OTHER_USER}")))
        .update_expression("SET #i = :i")
        .expression_attribute_names("#i", "intent_gone-1")
        .expression_attribute_values(
            ":i",
            AttributeValue::M(
                [(
                    "LastName".to_owned(),
                    AttributeValue::N(newer.timestamp_nanos_opt().unwrap().to_string()),
                )]
                .into(),
            ),
        )
        .send()
        .await
        .expect("written");
    let other = db
        .store
        .acquire(
            &instance(),
            &user(OTHER_USER),
            soon(),
            &FieldWatermarks::default(),
        )
        .await
        .expect("lease")
        .expect("free");
    assert_eq!(
        other.unsettled,
        FieldWatermarks::default().with(Field::LastName, newer)
    );
    db.store
        .release(&other.lease, None)
        .await
        .expect("released");
}

/// The notes of deferrals handed back (SPEC §2.4, §3) on moto: each receive noted once
/// however often it is written (a request sent again after a lost reply), read back by
/// the message's id, none for a message never noted (and no item made by the read), in
/// an item no user's key can be, expiring as the watermark items do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deferrals_are_noted_per_message_once_each_and_read_back() {
    use connect_identity_sync::outbound::watermarks::{DEFERRALS_PREFIX, deferrals_key};
    let db = table().await;
    assert_eq!(db.store.deferrals("msg-1").await, Ok(Vec::new()));
    let dynamo = db.moto.dynamo().await;
    assert!(
        dynamo
            .item(WATERMARK_TABLE, &deferrals_key("msg-1"))
            .await
            .expect("a read")
            .is_none(),
        "reading notes makes no item"
    );
    for receive in [1, 3, 3, 4] {
        db.store
            .note_deferral("msg-1", receive)
            .await
            .expect("noted");
    }
    db.store.note_deferral("msg-2", 2).await.expect("noted");
    let mut noted = db.store.deferrals("msg-1").await.expect("read");
    noted.sort_unstable();
    assert_eq!(noted, vec![1, 3, 4]);
    assert_eq!(db.store.deferrals("msg-2").await, Ok(vec![2]));
    let key = deferrals_key("msg-1");
    assert!(key.starts_with(DEFERRALS_PREFIX) && key.contains('.'));
    assert!(
        InstanceId::parse(key.split('#').next().unwrap_or_default()).is_err(),
        "no instance id, so no user's item, starts so"
    );
    let item = dynamo
        .item(WATERMARK_TABLE, &key)
        .await
        .expect("a read")
        .expect("the note's item");
    let expires: i64 = item["expires_at"].parse().expect("whole seconds");
    let expected = Utc::now().timestamp() + RETENTION.as_secs() as i64;
    assert!((expires - expected).abs() < 60, "{expires} vs {expected}");
}

/// A note on a missing table is `UnknownError` (the deferral then counts as a failure of
/// the record's own); a missing table holds no notes, so reading them finds none, and a
/// record's receives all count, as they do without the notes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_on_a_missing_table_is_an_unknown_error_and_none_is_read_there() {
    let moto = Moto::start().await.expect("moto");
    let store = DynamoWatermarks::new(client(&moto.endpoint()), "no-such-table", RETENTION);
    assert_unknown(
        store.note_deferral("msg-1", 1).await,
        "noting a deferral failed: the table does not exist",
    );
    assert_eq!(store.deferrals("msg-1").await, Ok(Vec::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notes_on_an_unreachable_table_are_an_unknown_error() {
    let store = unreachable();
    assert_unknown(
        store.note_deferral("msg-1", 1).await,
        "noting a deferral failed: a connection failure",
    );
    assert_unknown(
        store.deferrals("msg-1").await,
        "reading the deferral notes failed: a connection failure",
    );
}
