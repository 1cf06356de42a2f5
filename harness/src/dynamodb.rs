//! Amazon DynamoDB helpers over the real `aws-sdk-dynamodb` client, for the staleness
//! guard's watermark table on moto: create the table (partition key `pk`, String),
//! read an item, delete the table.

use std::collections::BTreeMap;

use aws_sdk_dynamodb::Client;

use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use crate::HarnessError;

/// The watermark table's name in a stack that asks for one.
pub const WATERMARK_TABLE: &str = "identity-watermarks";

/// A DynamoDB client pointed at a local endpoint.
#[derive(Clone, Debug)]
pub struct Dynamo {
    client: Client,
}

fn dynamo_error(e: impl std::error::Error) -> HarnessError {
    HarnessError::Dynamo(DisplayErrorContext(e).to_string())
}

impl Dynamo {
    /// A client for the DynamoDB at `endpoint` (moto serves it beside SQS).
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

    /// Creates a table keyed by `pk` (String), on demand, as the template does.
    ///
    /// # Errors
    /// When DynamoDB refuses it.
    pub async fn create_watermark_table(&self, name: &str) -> Result<(), HarnessError> {
        self.client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(dynamo_error)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(dynamo_error)?,
            )
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    /// Deletes a table.
    ///
    /// # Errors
    /// When DynamoDB refuses it.
    pub async fn delete_table(&self, name: &str) -> Result<(), HarnessError> {
        self.client
            .delete_table()
            .table_name(name)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(())
    }

    /// The item with partition key `pk`, each attribute as its string or number text
    /// (other types as their debug form); `None` when there is none.
    ///
    /// # Errors
    /// When DynamoDB fails.
    pub async fn item(
        &self,
        table: &str,
        pk: &str,
    ) -> Result<Option<BTreeMap<String, String>>, HarnessError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .key("pk", AttributeValue::S(pk.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(dynamo_error)?;
        Ok(out.item().map(|item| {
            item.iter()
                .map(|(k, v)| {
                    let text = match v {
                        AttributeValue::S(s) | AttributeValue::N(s) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (k.clone(), text)
                })
                .collect()
        }))
    }
}
