//! Adapter tests: each outside system's SDK behind its port. Connect and SQS errors mapped
//! to classes with `aws-smithy-mocks`; the SQS dead-letter format and the DynamoDB watermark
//! table against moto over HTTP.

mod connect;
mod dead_letter;
mod dead_letter_moto;
mod schedules;
mod watermarks;
