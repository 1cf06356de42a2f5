//! The fleet's shared request schedules in the staleness guard's table, behind the
//! `Schedules` port: one item per operation (`pk` = `fleet-rate#<Operation>`, which no
//! user's `<instance id>#<user id>` can be), written with one conditional `UpdateItem`
//! on its version; a lost race returns the item as it stands
//! (`ReturnValuesOnConditionCheckFailure`), so a container needs no read, and the
//! function no permission beyond the guard's own `dynamodb:UpdateItem`.
//!
//! Item attributes: `next_us` (N, epoch microseconds: when the next request may
//! start), `epoch` (N, drops so far), `version` (N, writes so far), `throttled_at_us`
//! and `throttled_rate` (N, the last drop: when, and the rate it dropped from; absent
//! before the first), `expires_at` (N, the table's TTL attribute).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};

use crate::domain::ports::PortFuture;
use crate::limiter::fleet::{Schedules, SharedSchedule, Swap, Throttle};

use super::watermarks::{EXPIRY, KEY, what_failed};

pub struct DynamoSchedules {
    client: Client,
    table: String,
    /// How long an item outlives its last write.
    retention: Duration,
}

impl DynamoSchedules {
    /// Schedules in `table`, each item kept `retention` after its last write.
    pub fn new(client: Client, table: impl Into<String>, retention: Duration) -> Self {
        DynamoSchedules {
            client,
            table: table.into(),
            retention,
        }
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<u64>,
        schedule: &SharedSchedule,
    ) -> Result<Swap, String> {
        let expires = chrono::Utc::now()
            .timestamp()
            .saturating_add(i64::try_from(self.retention.as_secs()).unwrap_or(i64::MAX));
        // Every name by placeholder: DynamoDB reserves many common words.
        let mut sets = vec![
            "#next = :next",
            "#epoch = :epoch",
            "#version = :version",
            "#exp = :exp",
        ];
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(KEY, AttributeValue::S(key.to_owned()))
            .expression_attribute_names("#exp", EXPIRY)
            .expression_attribute_names("#next", "next_us")
            .expression_attribute_names("#epoch", "epoch")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":next", number(schedule.next_us))
            .expression_attribute_values(":epoch", number(schedule.epoch))
            .expression_attribute_values(":version", number(schedule.version))
            .expression_attribute_values(":exp", number(expires))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(t) = schedule.throttle {
            sets.push("#at = :at");
            sets.push("#rate = :rate");
            request = request
                .expression_attribute_names("#at", "throttled_at_us")
                .expression_attribute_names("#rate", "throttled_rate")
                .expression_attribute_values(":at", number(t.at_us))
                .expression_attribute_values(":rate", number(t.from));
        }
        request = match expected {
            Some(version) => request
                .condition_expression("#version = :expected")
                .expression_attribute_values(":expected", number(version)),
            None => request
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", KEY),
        };
        match request
            .update_expression(format!("SET {}", sets.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(Swap::Done),
            Err(SdkError::ServiceError(e)) => match e.err() {
                UpdateItemError::ConditionalCheckFailedException(lost) => {
                    Ok(Swap::Lost(lost.item().and_then(read_schedule)))
                }
                _ => Err(failed(&SdkError::ServiceError(e))),
            },
            Err(e) => Err(failed(&e)),
        }
    }
}

fn failed(err: &SdkError<UpdateItemError, aws_sdk_dynamodb::config::http::HttpResponse>) -> String {
    format!(
        "fleet rate: writing the schedule failed: {}",
        what_failed(err)
    )
}

fn number(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

/// The schedule in `item`; `None` when it is not one (written by something else).
fn read_schedule(item: &HashMap<String, AttributeValue>) -> Option<SharedSchedule> {
    fn get<T: std::str::FromStr>(item: &HashMap<String, AttributeValue>, name: &str) -> Option<T> {
        item.get(name)?.as_n().ok()?.parse().ok()
    }
    let rate = |name: &str| get::<f64>(item, name).filter(|r| r.is_finite() && *r > 0.0);
    let throttle = match (get::<i64>(item, "throttled_at_us"), rate("throttled_rate")) {
        (Some(at_us), Some(from)) => Some(Throttle { at_us, from }),
        _ => None,
    };
    Some(SharedSchedule {
        next_us: get(item, "next_us")?,
        epoch: get(item, "epoch")?,
        throttle,
        version: get(item, "version")?,
    })
}

impl Schedules for DynamoSchedules {
    fn write<'a>(
        &'a self,
        key: &'a str,
        expected: Option<u64>,
        schedule: &'a SharedSchedule,
    ) -> PortFuture<'a, Result<Swap, String>> {
        Box::pin(self.swap(key, expected, schedule))
    }
}
