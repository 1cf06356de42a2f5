//! Amazon SQS helpers over the real `aws-sdk-sqs` client: queues (standard and
//! FIFO, with a redrive policy), sending, receiving everything with its
//! attributes, queue depth.

use std::collections::BTreeMap;

use aws_sdk_sqs::Client;

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use serde::Serialize;

use crate::HarnessError;

/// The region every local resource lives in.
pub const REGION: &str = "us-east-1";

/// An SQS client pointed at a local endpoint.
#[derive(Clone, Debug)]
pub struct Sqs {
    client: Client,
}

/// A queue that exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// Queue name (ends in `.fifo` for FIFO queues).
    pub name: String,
    /// Queue URL.
    pub url: String,
    /// Queue ARN.
    pub arn: String,
}

impl Queue {
    /// Whether this is a FIFO queue.
    #[must_use]
    pub fn is_fifo(&self) -> bool {
        self.name.ends_with(".fifo")
    }
}

/// How to create a queue.
#[derive(Clone, Debug)]
pub struct QueueSpec {
    name: String,
    visibility_timeout: Option<u32>,
    redrive: Option<(String, u32)>,
    content_based_dedup: bool,
}

impl QueueSpec {
    /// A queue named `name`; a name ending in `.fifo` makes a FIFO queue.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            visibility_timeout: None,
            redrive: None,
            content_based_dedup: false,
        }
    }

    /// The queue's visibility timeout in seconds.
    #[must_use]
    pub fn visibility_timeout(mut self, seconds: u32) -> Self {
        self.visibility_timeout = Some(seconds);
        self
    }

    /// A redrive policy to `dead_letter_arn` after `max_receive_count` receives.
    #[must_use]
    pub fn redrive(mut self, dead_letter_arn: impl Into<String>, max_receive_count: u32) -> Self {
        self.redrive = Some((dead_letter_arn.into(), max_receive_count));
        self
    }

    /// Content-based deduplication (FIFO only).
    #[must_use]
    pub fn content_based_deduplication(mut self) -> Self {
        self.content_based_dedup = true;
        self
    }
}

/// One message attribute as SQS returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Attribute {
    /// `String`, `Number` or `Binary` (with an optional `.custom` suffix).
    pub data_type: String,
    /// The string value (`String` and `Number`).
    pub string_value: Option<String>,
    /// The binary value.
    pub binary_value: Option<Vec<u8>>,
}

impl Attribute {
    /// A `String` attribute.
    pub fn string(value: impl Into<String>) -> Self {
        Self {
            data_type: "String".into(),
            string_value: Some(value.into()),
            binary_value: None,
        }
    }

    /// A `Number` attribute.
    pub fn number(value: impl ToString) -> Self {
        Self {
            data_type: "Number".into(),
            string_value: Some(value.to_string()),
            binary_value: None,
        }
    }
}

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Message {
    /// SQS message id.
    pub message_id: String,
    /// Receipt handle of this receive.
    pub receipt_handle: String,
    /// Body, exactly as stored.
    pub body: String,
    /// MD5 of the body, as SQS computed it.
    pub md5_of_body: String,
    /// System attributes (`ApproximateReceiveCount`, `SentTimestamp`, `MessageGroupId`, …).
    pub attributes: BTreeMap<String, String>,
    /// Message attributes.
    pub message_attributes: BTreeMap<String, Attribute>,
}

impl Message {
    /// A string or number message attribute's value.
    #[must_use]
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.message_attributes
            .get(name)
            .and_then(|a| a.string_value.as_deref())
    }

    /// A message attribute's data type.
    #[must_use]
    pub fn attr_type(&self, name: &str) -> Option<&str> {
        self.message_attributes
            .get(name)
            .map(|a| a.data_type.as_str())
    }

    /// `ApproximateReceiveCount`.
    #[must_use]
    pub fn receive_count(&self) -> u32 {
        self.attributes
            .get("ApproximateReceiveCount")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// A message to send.
#[derive(Clone, Debug, Default)]
pub struct Outgoing {
    /// Body.
    pub body: String,
    /// Message attributes.
    pub attributes: BTreeMap<String, Attribute>,
    /// `MessageGroupId` (FIFO).
    pub group_id: Option<String>,
    /// `MessageDeduplicationId` (FIFO without content-based deduplication).
    pub dedup_id: Option<String>,
}

impl Outgoing {
    /// A message with `body` and nothing else.
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// In FIFO group `group`, deduplicated by `dedup`.
    #[must_use]
    pub fn fifo(mut self, group: impl Into<String>, dedup: impl Into<String>) -> Self {
        self.group_id = Some(group.into());
        self.dedup_id = Some(dedup.into());
        self
    }

    /// With a message attribute.
    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>, value: Attribute) -> Self {
        self.attributes.insert(name.into(), value);
        self
    }
}

fn sdk_err(e: impl std::error::Error) -> HarnessError {
    HarnessError::Sqs(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

impl Sqs {
    /// A client for the SQS endpoint at `endpoint`, with static credentials.
    pub async fn new(endpoint: &str) -> Self {
        let config = crate::local_aws::sdk_config(endpoint).await;
        Self {
            client: Client::new(&config),
        }
    }

    /// The underlying SDK client.
    #[must_use]
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a queue (or returns the existing one of that name).
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn create_queue(&self, spec: &QueueSpec) -> Result<Queue, HarnessError> {
        let mut request = self.client.create_queue().queue_name(&spec.name);
        if spec.name.ends_with(".fifo") {
            request = request.attributes(QueueAttributeName::FifoQueue, "true");
            if spec.content_based_dedup {
                request = request.attributes(QueueAttributeName::ContentBasedDeduplication, "true");
            }
        }
        if let Some(v) = spec.visibility_timeout {
            request = request.attributes(QueueAttributeName::VisibilityTimeout, v.to_string());
        }
        if let Some((arn, max)) = &spec.redrive {
            let policy = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": max});
            request = request.attributes(QueueAttributeName::RedrivePolicy, policy.to_string());
        }
        let out = request.send().await.map_err(sdk_err)?;
        let url = out
            .queue_url()
            .ok_or_else(|| HarnessError::Sqs("CreateQueue returned no URL".into()))?
            .to_owned();
        let arn = self.queue_arn(&url).await?;
        Ok(Queue {
            name: spec.name.clone(),
            url,
            arn,
        })
    }

    /// The ARN of the queue at `url`.
    ///
    /// # Errors
    /// When the queue does not exist.
    pub async fn queue_arn(&self, url: &str) -> Result<String, HarnessError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(sdk_err)?;
        out.attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .ok_or_else(|| HarnessError::Sqs(format!("no QueueArn for {url}")))
    }

    /// Deletes the queue at `url`.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn delete_queue(&self, url: &str) -> Result<(), HarnessError> {
        self.client
            .delete_queue()
            .queue_url(url)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// Sends one message; returns its message id.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn send(&self, url: &str, message: &Outgoing) -> Result<String, HarnessError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(url)
            .message_body(&message.body)
            .set_message_group_id(message.group_id.clone())
            .set_message_deduplication_id(message.dedup_id.clone());
        for (name, attr) in &message.attributes {
            let value = MessageAttributeValue::builder()
                .data_type(&attr.data_type)
                .set_string_value(attr.string_value.clone())
                .set_binary_value(
                    attr.binary_value
                        .clone()
                        .map(aws_sdk_sqs::primitives::Blob::new),
                )
                .build()
                .map_err(sdk_err)?;
            request = request.message_attributes(name, value);
        }
        let out = request.send().await.map_err(sdk_err)?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }

    /// Sends a plain body; returns its message id.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn send_body(&self, url: &str, body: &str) -> Result<String, HarnessError> {
        self.send(url, &Outgoing::new(body)).await
    }

    /// Sends plain bodies, ten to a `SendMessageBatch` request (a backlog of thousands
    /// is queued in a tenth of the requests).
    ///
    /// # Errors
    /// When SQS refuses a request or an entry.
    pub async fn send_bodies(&self, url: &str, bodies: &[String]) -> Result<(), HarnessError> {
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .build()
                        .map_err(sdk_err)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(sdk_err)?;
            if let Some(failed) = out.failed().first() {
                return Err(HarnessError::Sqs(format!(
                    "SendMessageBatch refused an entry: {}",
                    failed.code()
                )));
            }
        }
        Ok(())
    }

    /// One `ReceiveMessage` call with every system and message attribute.
    /// `visibility` overrides the queue's visibility timeout for these messages.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn receive(
        &self,
        url: &str,
        max: i32,
        wait_seconds: i32,
        visibility: Option<i32>,
    ) -> Result<Vec<Message>, HarnessError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.messages().iter().map(convert).collect())
    }

    /// Receives everything visible in the queue (each message once), hiding what it
    /// got for five minutes; nothing is deleted.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn receive_all(&self, url: &str) -> Result<Vec<Message>, HarnessError> {
        let mut all = Vec::new();
        loop {
            let batch = self.receive(url, 10, 0, Some(300)).await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// Receives and deletes everything visible in the queue.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn drain(&self, url: &str) -> Result<Vec<Message>, HarnessError> {
        let all = self.receive_all(url).await?;
        for m in &all {
            self.delete(url, &m.receipt_handle).await?;
        }
        Ok(all)
    }

    /// Deletes one received message.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn delete(&self, url: &str, receipt_handle: &str) -> Result<(), HarnessError> {
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// `(visible, in flight)` message counts.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn depth(&self, url: &str) -> Result<(u64, u64), HarnessError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(sdk_err)?;
        let get = |name: &QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok((
            get(&QueueAttributeName::ApproximateNumberOfMessages)
                + get(&QueueAttributeName::ApproximateNumberOfMessagesDelayed),
            get(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// Visible plus in-flight messages.
    ///
    /// # Errors
    /// When SQS refuses.
    pub async fn total_depth(&self, url: &str) -> Result<u64, HarnessError> {
        let (visible, in_flight) = self.depth(url).await?;
        Ok(visible + in_flight)
    }
}

fn convert(m: &aws_sdk_sqs::types::Message) -> Message {
    let attributes = m
        .attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    let message_attributes = m
        .message_attributes()
        .map(|a| {
            a.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Attribute {
                            data_type: v.data_type().to_owned(),
                            string_value: v.string_value().map(str::to_owned),
                            binary_value: v.binary_value().map(|b| b.as_ref().to_vec()),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Message {
        message_id: m.message_id().unwrap_or_default().to_owned(),
        receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
        body: m.body().unwrap_or_default().to_owned(),
        md5_of_body: m.md5_of_body().unwrap_or_default().to_owned(),
        attributes,
        message_attributes,
    }
}
