//! The emulator's data model: instances, users and the control-plane types (seed, faults,
//! journal). Users and instances serialise in Amazon Connect's own JSON shape (PascalCase), so
//! the same value answers `DescribeUser` and the `/_emulator/users/…` assertion endpoint.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The Connect operations the emulator implements. Faults, quotas, latency and the journal are
/// keyed by these names, spelled exactly as in the Connect API reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    DescribeInstance,
    DescribeUser,
    UpdateUserIdentityInfo,
    SearchUsers,
    ListUsers,
    CreateUser,
    DeleteUser,
}

impl Operation {
    /// Every implemented operation, in a stable order.
    pub const ALL: [Operation; 7] = [
        Operation::DescribeInstance,
        Operation::DescribeUser,
        Operation::UpdateUserIdentityInfo,
        Operation::SearchUsers,
        Operation::ListUsers,
        Operation::CreateUser,
        Operation::DeleteUser,
    ];

    /// The operation's name as used on the wire and in the control API.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::DescribeInstance => "DescribeInstance",
            Operation::DescribeUser => "DescribeUser",
            Operation::UpdateUserIdentityInfo => "UpdateUserIdentityInfo",
            Operation::SearchUsers => "SearchUsers",
            Operation::ListUsers => "ListUsers",
            Operation::CreateUser => "CreateUser",
            Operation::DeleteUser => "DeleteUser",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Operation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Operation::ALL
            .into_iter()
            .find(|op| op.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown operation {s:?}"))
    }
}

/// How an instance manages identities; decides which identity fields the API may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum IdentityManagementType {
    /// Identities live in an external IdP; Email is owned by it.
    Saml,
    /// Identities live in Connect itself.
    #[default]
    ConnectManaged,
    /// Identities live in a directory; names and Email are owned by it.
    ExistingDirectory,
}

impl IdentityManagementType {
    /// The wire spelling (`SAML`, `CONNECT_MANAGED`, `EXISTING_DIRECTORY`).
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityManagementType::Saml => "SAML",
            IdentityManagementType::ConnectManaged => "CONNECT_MANAGED",
            IdentityManagementType::ExistingDirectory => "EXISTING_DIRECTORY",
        }
    }
}

/// A Connect instance as `DescribeInstance` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Instance {
    pub id: String,
    pub arn: String,
    pub identity_management_type: IdentityManagementType,
    pub instance_alias: String,
    /// Epoch seconds, the wire format Connect uses for timestamps.
    pub created_time: f64,
    pub service_role: String,
    pub instance_status: String,
    pub inbound_calls_enabled: bool,
    pub outbound_calls_enabled: bool,
    pub instance_access_url: String,
}

/// A user's identity fields. Absent (`None`) fields are omitted on the wire.
///
/// Deserialisation accepts both Connect's spelling (`FirstName`) and camelCase (`firstName`)
/// so seed files can use either.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IdentityInfo {
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "firstName")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "lastName")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "email")]
    pub email: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "secondaryEmail"
    )]
    pub secondary_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "mobile")]
    pub mobile: Option<String>,
}

/// A user's phone settings, as Connect reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PhoneConfig {
    #[serde(alias = "phoneType")]
    pub phone_type: String,
    #[serde(default, alias = "autoAccept")]
    pub auto_accept: bool,
    #[serde(default, alias = "afterContactWorkTimeLimit")]
    pub after_contact_work_time_limit: i32,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "deskPhoneNumber"
    )]
    pub desk_phone_number: Option<String>,
}

impl Default for PhoneConfig {
    fn default() -> Self {
        PhoneConfig {
            phone_type: "SOFT_PHONE".to_owned(),
            auto_accept: false,
            after_contact_work_time_limit: 0,
            desk_phone_number: None,
        }
    }
}

/// A user as `DescribeUser` reports it (plus nothing else: the same JSON is served by the
/// assertion endpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct User {
    pub id: String,
    pub arn: String,
    pub username: String,
    pub identity_info: IdentityInfo,
    pub phone_config: PhoneConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory_user_id: Option<String>,
    pub security_profile_ids: Vec<String>,
    pub routing_profile_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hierarchy_group_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Epoch seconds of the last change.
    pub last_modified_time: f64,
    pub last_modified_region: String,
}

/// A set of instances and users to load, from `POST /_emulator/seed`, `--seed FILE` or
/// [`crate::EmulatorHandle::seed`]. Loading is an upsert: an existing id is replaced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Seed {
    #[serde(default)]
    pub instances: Vec<SeedInstance>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
}

/// One instance of a [`Seed`]. A missing id is generated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedInstance {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub identity_management_type: IdentityManagementType,
    #[serde(default)]
    pub alias: Option<String>,
}

/// One user of a [`Seed`]. A missing id is generated; `instanceId` may be an id or an ARN.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedUser {
    pub instance_id: String,
    #[serde(default)]
    pub id: Option<String>,
    pub username: String,
    #[serde(default)]
    pub identity_info: IdentityInfo,
    #[serde(default)]
    pub security_profile_ids: Vec<String>,
    #[serde(default)]
    pub routing_profile_id: Option<String>,
    #[serde(default)]
    pub hierarchy_group_id: Option<String>,
    #[serde(default)]
    pub directory_user_id: Option<String>,
    #[serde(default)]
    pub phone_config: Option<PhoneConfig>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// What a seed created: the ids, so callers that let ids be generated can find them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeedResult {
    pub instances: Vec<String>,
    pub users: Vec<SeededUser>,
}

/// One user created by a seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SeededUser {
    pub instance_id: String,
    pub id: String,
    pub username: String,
}

/// A scripted failure: the next `count` calls matching `operation` (any when `None`),
/// `instanceId` and `userId` fail with `errorType`.
///
/// Besides Connect's error names, `errorType` may be:
/// - `Timeout` (or `Hang`): the reply is held back for `delayMs` (default 10 minutes), long
///   enough for any client timeout to fire, then the call proceeds normally;
/// - `Late`: the request is carried out after `delayMs` (default 10 minutes) and then
///   answered, even if the caller has given up by then: a request that lands after its
///   caller's timeout;
/// - `Disconnect` (or `ConnectionReset`): the connection is closed without a reply;
/// - any other name: an unmodelled error with status `status` (default 400).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    #[serde(default)]
    pub operation: Option<Operation>,
    #[serde(default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    pub error_type: String,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault failing the next `count` calls of `operation` with `error_type`.
    pub fn new(operation: Operation, error_type: impl Into<String>, count: u32) -> Self {
        Fault {
            operation: Some(operation),
            instance_id: None,
            user_id: None,
            error_type: error_type.into(),
            count,
            message: None,
            status: None,
            delay_ms: None,
        }
    }

    /// Restricts the fault to calls about one user.
    pub fn for_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// Restricts the fault to calls about one instance (id, not ARN).
    pub fn for_instance(mut self, instance_id: impl Into<String>) -> Self {
        self.instance_id = Some(instance_id.into());
        self
    }

    /// Sets the error message sent back.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the HTTP status (for unmodelled errors; modelled ones have their own).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets how long a `Timeout` fault holds the reply back.
    pub fn with_delay_ms(mut self, delay_ms: u64) -> Self {
        self.delay_ms = Some(delay_ms);
        self
    }
}

/// One Connect API call as the emulator answered it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JournalEntry {
    /// Operation name, or `Unknown` for a request that matched no operation.
    pub operation: String,
    /// The instance id (an ARN in the request is reduced to its id).
    pub instance_id: Option<String>,
    pub user_id: Option<String>,
    pub status: u16,
    /// `x-amzn-ErrorType` of the reply, `Disconnect` for a dropped connection; `None` on success.
    pub error_type: Option<String>,
    /// The parsed JSON request body; `null` for calls without one.
    pub request_body: serde_json::Value,
    /// When the call arrived, in milliseconds since the Unix epoch.
    pub at: u64,
    /// When the answer was ready (after any latency), in milliseconds since the Unix
    /// epoch; `None` until then.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// Arrival order: unique and increasing across the emulator's life.
    #[serde(default)]
    pub seq: u64,
    /// The access key id the request was signed with (SigV4 `Credential=`), telling
    /// callers with different credentials apart.
    #[serde(default)]
    pub caller: Option<String>,
}

/// Calls and throttles of one operation, from one caller or from all of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    /// Calls received (answered or not).
    pub calls: u64,
    /// Calls answered with `ThrottlingException` (the account-wide bucket was empty, or a
    /// scripted fault).
    pub throttled: u64,
}

impl CallCounts {
    /// The throttled share of the calls (0 without calls).
    pub fn throttled_share(&self) -> f64 {
        if self.calls == 0 {
            0.0
        } else {
            self.throttled as f64 / self.calls as f64
        }
    }
}

/// Per-operation counts of the calls in the journal, overall and per caller (access key id;
/// `-` for an unsigned call). The buckets are account-wide: one per operation, shared by
/// every caller, so one caller's calls empty them for all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperationStats {
    pub total: CallCounts,
    pub callers: BTreeMap<String, CallCounts>,
}
