//! The emulator's state behind one lock: instances and users, and the scripted behaviour
//! (faults, quotas, latency) plus the journal of calls. Every Connect operation's semantics
//! live here, independent of HTTP, so the wire layer only parses and formats.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::model::{
    Fault, IdentityInfo, Instance, JournalEntry, Operation, OperationStats, PhoneConfig, Seed,
    SeedResult, SeedUser, SeededUser, User,
};
use crate::validate;

/// Routing profile given to users created without one.
pub const DEFAULT_ROUTING_PROFILE_ID: &str = "00000000-0000-4000-8000-00000000b001";

/// Where the emulated account lives: used to build ARNs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub region: String,
    pub account_id: String,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
        }
    }
}

impl Account {
    pub fn instance_arn(&self, instance_id: &str) -> String {
        format!(
            "arn:aws:connect:{}:{}:instance/{instance_id}",
            self.region, self.account_id
        )
    }

    pub fn user_arn(&self, instance_id: &str, user_id: &str) -> String {
        format!("{}/agent/{user_id}", self.instance_arn(instance_id))
    }
}

/// Reduces an instance reference (id or instance ARN) to the id it names.
pub fn instance_id_of(reference: &str) -> &str {
    if let Some(rest) = reference.strip_prefix("arn:") {
        // arn:{partition}:connect:{region}:{account}:instance/{id}
        let mut parts = rest.splitn(5, ':');
        let resource = parts.nth(4).unwrap_or("");
        if let Some(id) = resource.strip_prefix("instance/") {
            if !id.is_empty() && !id.contains('/') {
                return id;
            }
        }
    }
    reference
}

struct Bucket {
    rps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

struct InstanceState {
    instance: Instance,
    users: Vec<User>,
    /// Lowercased username → user id, and the ids held: seeding tens of thousands of
    /// users stays linear.
    names: HashMap<String, String>,
    ids: std::collections::HashSet<String>,
}

#[derive(Default)]
struct Inner {
    instances: BTreeMap<String, InstanceState>,
    faults: Vec<Fault>,
    quotas: HashMap<Operation, Bucket>,
    latency: HashMap<Operation, Duration>,
    journal: Vec<(u64, JournalEntry)>,
}

/// The shared state of one emulator.
pub struct Store {
    account: Account,
    initial: Seed,
    inner: Mutex<Inner>,
    next_seq: AtomicU64,
    rng: AtomicU64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn now_secs() -> f64 {
    (now_ms() / 1000) as f64
}

impl Store {
    /// A store holding `initial`, which [`Store::reset`] restores.
    pub fn new(account: Account, initial: Seed) -> Result<Self, ApiError> {
        let seed_rng = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let store = Store {
            account,
            initial,
            inner: Mutex::new(Inner::default()),
            next_seq: AtomicU64::new(1),
            rng: AtomicU64::new(seed_rng),
        };
        store.seed(&store.initial.clone())?;
        Ok(store)
    }

    pub fn account(&self) -> &Account {
        &self.account
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn random(&self) -> u64 {
        // splitmix64: enough to make ids unique and unpredictable-looking.
        let mut z = self
            .rng
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
            .wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A fresh id shaped like Connect's (a version-4 UUID).
    pub fn new_id(&self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | ((b >> 48) & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Restores the initial seed and clears faults, quotas, latency and the journal.
    pub fn reset(&self) {
        *self.lock() = Inner::default();
        // The initial seed was loaded once already, so it cannot fail now.
        let _ = self.seed(&self.initial);
    }

    /// Loads instances and users (upsert by id).
    pub fn seed(&self, seed: &Seed) -> Result<SeedResult, ApiError> {
        let mut inner = self.lock();
        let mut result = SeedResult::default();
        for spec in &seed.instances {
            let id = match &spec.id {
                Some(id) if !id.is_empty() => instance_id_of(id).to_owned(),
                _ => self.new_id(),
            };
            let alias = spec
                .alias
                .clone()
                .unwrap_or_else(|| format!("instance-{}", &id[..id.len().min(8)]));
            let instance = Instance {
                arn: self.account.instance_arn(&id),
                id: id.clone(),
                identity_management_type: spec.identity_management_type,
                instance_access_url: format!("https://{alias}.my.connect.aws"),
                instance_alias: alias,
                created_time: now_secs(),
                service_role: format!(
                    "arn:aws:iam::{}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect",
                    self.account.account_id
                ),
                instance_status: "ACTIVE".to_owned(),
                inbound_calls_enabled: true,
                outbound_calls_enabled: true,
            };
            match inner.instances.get_mut(&id) {
                Some(existing) => existing.instance = instance,
                None => {
                    inner.instances.insert(
                        id.clone(),
                        InstanceState {
                            instance,
                            users: Vec::new(),
                            names: HashMap::new(),
                            ids: std::collections::HashSet::new(),
                        },
                    );
                }
            }
            result.instances.push(id);
        }
        for spec in &seed.users {
            let seeded = self.seed_user(&mut inner, spec)?;
            result.users.push(seeded);
        }
        Ok(result)
    }

    fn seed_user(&self, inner: &mut Inner, spec: &SeedUser) -> Result<SeededUser, ApiError> {
        let instance_id = instance_id_of(&spec.instance_id).to_owned();
        let state = inner
            .instances
            .get_mut(&instance_id)
            .ok_or_else(|| ApiError::not_found(format!("instance {instance_id} is not seeded")))?;
        if spec.username.is_empty() {
            return Err(ApiError::invalid_parameter("username is required"));
        }
        validate::check_fields(&spec.identity_info)?;
        let id = match &spec.id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => self.new_id(),
        };
        if state
            .names
            .get(&spec.username.to_lowercase())
            .is_some_and(|holder| *holder != id)
        {
            return Err(ApiError::duplicate(format!(
                "username {} already exists in instance {instance_id}",
                spec.username
            )));
        }
        let user = User {
            arn: self.account.user_arn(&instance_id, &id),
            id: id.clone(),
            username: spec.username.clone(),
            identity_info: spec.identity_info.clone(),
            phone_config: spec.phone_config.clone().unwrap_or_default(),
            directory_user_id: spec.directory_user_id.clone(),
            security_profile_ids: spec.security_profile_ids.clone(),
            routing_profile_id: spec
                .routing_profile_id
                .clone()
                .unwrap_or_else(|| DEFAULT_ROUTING_PROFILE_ID.to_owned()),
            hierarchy_group_id: spec.hierarchy_group_id.clone(),
            tags: spec.tags.clone(),
            last_modified_time: now_secs(),
            last_modified_region: self.account.region.clone(),
        };
        if state.ids.contains(&id) {
            if let Some(existing) = state.users.iter_mut().find(|u| u.id == id) {
                state.names.remove(&existing.username.to_lowercase());
                *existing = user;
            }
        } else {
            state.ids.insert(id.clone());
            state.users.push(user);
        }
        state.names.insert(spec.username.to_lowercase(), id.clone());
        Ok(SeededUser {
            instance_id,
            id,
            username: spec.username.clone(),
        })
    }

    pub fn instance(&self, reference: &str) -> Option<Instance> {
        let inner = self.lock();
        inner
            .instances
            .get(instance_id_of(reference))
            .map(|s| s.instance.clone())
    }

    pub fn user(&self, instance: &str, user_id: &str) -> Option<User> {
        let inner = self.lock();
        inner
            .instances
            .get(instance_id_of(instance))?
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
    }

    pub fn users(&self, instance: &str) -> Option<Vec<User>> {
        let inner = self.lock();
        Some(inner.instances.get(instance_id_of(instance))?.users.clone())
    }

    // ---- Connect operations -------------------------------------------------------------

    pub fn describe_instance(&self, reference: &str) -> Result<Instance, ApiError> {
        self.instance(reference)
            .ok_or_else(|| ApiError::not_found(format!("Instance not found: {reference}")))
    }

    pub fn describe_user(&self, instance: &str, user_id: &str) -> Result<User, ApiError> {
        let inner = self.lock();
        let state = instance_state(&inner, instance)?;
        state
            .users
            .iter()
            .find(|u| u.id == user_id)
            .cloned()
            .ok_or_else(|| user_not_found(user_id))
    }

    pub fn update_identity_info(
        &self,
        instance: &str,
        user_id: &str,
        request: &IdentityInfo,
    ) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let state = inner
            .instances
            .get_mut(instance_id_of(instance))
            .ok_or_else(|| instance_not_found(instance))?;
        let mode = state.instance.identity_management_type;
        let user = state
            .users
            .iter_mut()
            .find(|u| u.id == user_id)
            .ok_or_else(|| user_not_found(user_id))?;
        let next = validate::apply_update(mode, &user.identity_info, request)?;
        user.identity_info = next;
        user.last_modified_time = now_secs();
        Ok(())
    }

    pub fn create_user(&self, instance: &str, body: &Value) -> Result<(String, String), ApiError> {
        let username = body
            .get("Username")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::invalid_parameter("Username is required"))?;
        let identity_info: IdentityInfo = parse_member(body, "IdentityInfo")?.unwrap_or_default();
        let phone_config: Option<PhoneConfig> = parse_member(body, "PhoneConfig")?;
        let security_profile_ids: Vec<String> =
            parse_member(body, "SecurityProfileIds")?.unwrap_or_default();
        let tags: BTreeMap<String, String> = parse_member(body, "Tags")?.unwrap_or_default();
        let text = |key: &str| body.get(key).and_then(Value::as_str).map(str::to_owned);
        let mut inner = self.lock();
        let instance_id = instance_state(&inner, instance)?.instance.id.clone();
        let spec = SeedUser {
            instance_id: instance_id.clone(),
            id: None,
            username: username.to_owned(),
            identity_info,
            security_profile_ids,
            routing_profile_id: text("RoutingProfileId"),
            hierarchy_group_id: text("HierarchyGroupId"),
            directory_user_id: text("DirectoryUserId"),
            phone_config,
            tags,
        };
        let seeded = self.seed_user(&mut inner, &spec)?;
        let arn = self.account.user_arn(&instance_id, &seeded.id);
        Ok((seeded.id, arn))
    }

    pub fn search_users(&self, body: &Value) -> Result<Value, ApiError> {
        let instance = body
            .get("InstanceId")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid_parameter("InstanceId is required"))?;
        let criteria = body.get("SearchCriteria").cloned().unwrap_or(Value::Null);
        let scope = PageScope::new(Operation::SearchUsers, instance_id_of(instance), &criteria);
        let token = match body.get("NextToken") {
            None | Some(Value::Null) => None,
            Some(Value::String(t)) => Some(t.as_str()),
            Some(_) => return Err(ApiError::invalid_parameter("NextToken must be a string")),
        };
        let max_results = match body.get("MaxResults") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_i64()
                    .ok_or_else(|| ApiError::invalid_parameter("MaxResults must be an integer"))?,
            ),
        };
        let (offset, limit) = page(&scope, token, max_results, SEARCH_USERS_MAX_RESULTS)?;
        let inner = self.lock();
        let state = instance_state(&inner, instance)?;
        let mut matched = Vec::new();
        for user in &state.users {
            if matches_criteria(&criteria, user)? {
                matched.push(user);
            }
        }
        let total = matched.len();
        let users: Vec<Value> = matched
            .iter()
            .skip(offset)
            .take(limit)
            .map(|u| search_summary(u))
            .collect();
        let mut reply = json!({ "Users": users, "ApproximateTotalCount": total });
        if offset + limit < total {
            reply["NextToken"] = Value::String(scope.token(offset + limit));
        }
        Ok(reply)
    }

    /// `ListUsers`; `max_results` is the raw `maxResults` query value.
    pub fn list_users(
        &self,
        instance: &str,
        next_token: Option<&str>,
        max_results: Option<&str>,
    ) -> Result<Value, ApiError> {
        let max = match max_results {
            Some(m) => Some(
                m.parse::<i64>()
                    .map_err(|_| ApiError::invalid_parameter("maxResults must be a number"))?,
            ),
            None => None,
        };
        let scope = PageScope::new(Operation::ListUsers, instance_id_of(instance), &Value::Null);
        let (offset, limit) = page(&scope, next_token, max, LIST_USERS_MAX_RESULTS)?;
        let inner = self.lock();
        let state = instance_state(&inner, instance)?;
        let list: Vec<Value> = state
            .users
            .iter()
            .skip(offset)
            .take(limit)
            .map(|u| {
                json!({
                    "Id": u.id,
                    "Arn": u.arn,
                    "Username": u.username,
                    "LastModifiedTime": u.last_modified_time,
                    "LastModifiedRegion": u.last_modified_region,
                })
            })
            .collect();
        let mut reply = json!({ "UserSummaryList": list });
        if offset + limit < state.users.len() {
            reply["NextToken"] = Value::String(scope.token(offset + limit));
        }
        Ok(reply)
    }

    /// `DeleteUser`: the user is gone; its username is free for a new user.
    pub fn delete_user(&self, instance: &str, user_id: &str) -> Result<(), ApiError> {
        let mut inner = self.lock();
        let state = inner
            .instances
            .get_mut(instance_id_of(instance))
            .ok_or_else(|| instance_not_found(instance))?;
        let index = state
            .users
            .iter()
            .position(|u| u.id == user_id)
            .ok_or_else(|| user_not_found(user_id))?;
        let user = state.users.remove(index);
        state.ids.remove(&user.id);
        state.names.remove(&user.username.to_lowercase());
        Ok(())
    }

    // ---- scripted behaviour -------------------------------------------------------------

    pub fn add_fault(&self, fault: Fault) {
        if fault.count > 0 {
            self.lock().faults.push(fault);
        }
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.lock().faults.clone()
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Consumes one use of the first fault matching the call, if any.
    pub fn take_fault(
        &self,
        operation: Operation,
        instance_id: Option<&str>,
        user_id: Option<&str>,
    ) -> Option<Fault> {
        let mut inner = self.lock();
        let index = inner.faults.iter().position(|f| {
            f.operation.is_none_or(|op| op == operation)
                && f.instance_id
                    .as_deref()
                    .is_none_or(|i| Some(instance_id_of(i)) == instance_id)
                && f.user_id.as_deref().is_none_or(|u| Some(u) == user_id)
        })?;
        let fault = &mut inner.faults[index];
        fault.count -= 1;
        let fired = fault.clone();
        if fault.count == 0 {
            inner.faults.remove(index);
        }
        Some(fired)
    }

    /// Sets (or with `None` removes) a token bucket on `operation`. The bucket starts full.
    pub fn set_quota(
        &self,
        operation: Operation,
        rps: Option<f64>,
        burst: Option<u32>,
    ) -> Result<(), ApiError> {
        let mut inner = self.lock();
        match rps {
            None => {
                inner.quotas.remove(&operation);
            }
            Some(rps) if rps.is_finite() && rps > 0.0 => {
                let burst = f64::from(burst.unwrap_or_else(|| rps.ceil().max(1.0) as u32).max(1));
                inner.quotas.insert(
                    operation,
                    Bucket {
                        rps,
                        burst,
                        tokens: burst,
                        last: Instant::now(),
                    },
                );
            }
            Some(_) => return Err(ApiError::invalid_parameter("rps must be positive")),
        }
        Ok(())
    }

    /// Takes a token from `operation`'s bucket; `false` means the call is over quota.
    pub fn take_token(&self, operation: Operation) -> bool {
        let mut inner = self.lock();
        match inner.quotas.get_mut(&operation) {
            Some(bucket) => bucket.take(Instant::now()),
            None => true,
        }
    }

    /// Sets the delay added before answering `operation`; zero removes it.
    pub fn set_latency(&self, operation: Operation, delay: Duration) {
        let mut inner = self.lock();
        if delay.is_zero() {
            inner.latency.remove(&operation);
        } else {
            inner.latency.insert(operation, delay);
        }
    }

    pub fn latency(&self, operation: Operation) -> Option<Duration> {
        self.lock().latency.get(&operation).copied()
    }

    // ---- journal ------------------------------------------------------------------------

    /// Records a call as it arrives; the returned number finishes it with [`Store::finish`].
    pub fn record(&self, mut entry: JournalEntry) -> u64 {
        let mut inner = self.lock();
        // Numbered under the lock, so the journal's order is the numbers' order.
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        entry.seq = seq;
        inner.journal.push((seq, entry));
        seq
    }

    /// Sets the outcome of a recorded call.
    pub fn finish(&self, seq: u64, status: u16, error_type: Option<String>) {
        let mut inner = self.lock();
        if let Some((_, entry)) = inner.journal.iter_mut().rev().find(|(s, _)| *s == seq) {
            entry.status = status;
            entry.error_type = error_type;
            entry.finished_at = Some(now_ms());
        }
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.lock().journal.iter().map(|(_, e)| e.clone()).collect()
    }

    pub fn clear_journal(&self) {
        self.lock().journal.clear();
    }

    /// Calls and throttles per operation in the journal, overall and per caller.
    pub fn stats(&self) -> BTreeMap<String, OperationStats> {
        let inner = self.lock();
        let mut out: BTreeMap<String, OperationStats> = BTreeMap::new();
        for (_, entry) in &inner.journal {
            let throttled = entry.error_type.as_deref() == Some("ThrottlingException");
            let stats = out.entry(entry.operation.clone()).or_default();
            let caller = entry.caller.clone().unwrap_or_else(|| "-".to_owned());
            for counts in [&mut stats.total, stats.callers.entry(caller).or_default()] {
                counts.calls += 1;
                counts.throttled += u64::from(throttled);
            }
        }
        out
    }
}

fn instance_not_found(reference: &str) -> ApiError {
    ApiError::not_found(format!("Instance not found: {reference}"))
}

fn user_not_found(user_id: &str) -> ApiError {
    ApiError::not_found(format!("User not found for id: {user_id}"))
}

fn instance_state<'a>(inner: &'a Inner, reference: &str) -> Result<&'a InstanceState, ApiError> {
    inner
        .instances
        .get(instance_id_of(reference))
        .ok_or_else(|| instance_not_found(reference))
}

fn parse_member<T: serde::de::DeserializeOwned>(
    body: &Value,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value(v.clone())
            .map(Some)
            .map_err(|e| ApiError::invalid_parameter(format!("{key} is malformed: {e}"))),
    }
}

/// `SearchUsers`' documented `MaxResults` range is 1–500; `ListUsers`' is 1–1000.
/// Both return 100 results a page when `MaxResults` is absent.
pub const SEARCH_USERS_MAX_RESULTS: usize = 500;
pub const LIST_USERS_MAX_RESULTS: usize = 1000;
const DEFAULT_MAX_RESULTS: usize = 100;

/// What a `NextToken` belongs to: one operation on one instance with one set of criteria.
/// A token is opaque to clients and valid only for the listing that issued it, as Connect's
/// are; a token from another listing, or one that is not ours, is refused.
struct PageScope {
    fingerprint: u64,
}

impl PageScope {
    fn new(operation: Operation, instance_id: &str, criteria: &Value) -> Self {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        operation.as_str().hash(&mut hasher);
        instance_id.hash(&mut hasher);
        criteria.to_string().hash(&mut hasher);
        PageScope {
            fingerprint: hasher.finish(),
        }
    }

    fn token(&self, offset: usize) -> String {
        format!(
            "{:016x}{:016x}",
            self.fingerprint,
            offset as u64 ^ self.fingerprint
        )
    }

    fn offset(&self, token: &str) -> Option<usize> {
        if token.len() != 32 || !token.is_ascii() {
            return None;
        }
        let fingerprint = u64::from_str_radix(&token[..16], 16).ok()?;
        let masked = u64::from_str_radix(&token[16..], 16).ok()?;
        (fingerprint == self.fingerprint).then_some((masked ^ fingerprint) as usize)
    }
}

/// Offset and page size from a `NextToken` of `scope` and `MaxResults` (1..=`max`).
fn page(
    scope: &PageScope,
    token: Option<&str>,
    max_results: Option<i64>,
    max: usize,
) -> Result<(usize, usize), ApiError> {
    let offset = match token {
        None => 0,
        Some(t) => scope
            .offset(t)
            .ok_or_else(|| ApiError::invalid_parameter("The NextToken is not valid"))?,
    };
    let limit = match max_results {
        None => DEFAULT_MAX_RESULTS,
        Some(n) if n >= 1 && n as u64 <= max as u64 => n as usize,
        Some(_) => {
            return Err(ApiError::invalid_parameter(format!(
                "MaxResults must be between 1 and {max}"
            )));
        }
    };
    Ok((offset, limit))
}

fn search_summary(user: &User) -> Value {
    let mut identity = serde_json::Map::new();
    if let Some(first) = &user.identity_info.first_name {
        identity.insert("FirstName".into(), first.clone().into());
    }
    if let Some(last) = &user.identity_info.last_name {
        identity.insert("LastName".into(), last.clone().into());
    }
    let mut summary = json!({
        "Id": user.id,
        "Arn": user.arn,
        "Username": user.username,
        "IdentityInfo": identity,
        "PhoneConfig": user.phone_config,
        "RoutingProfileId": user.routing_profile_id,
        "SecurityProfileIds": user.security_profile_ids,
    });
    if let Some(h) = &user.hierarchy_group_id {
        summary["HierarchyGroupId"] = h.clone().into();
    }
    if let Some(d) = &user.directory_user_id {
        summary["DirectoryUserId"] = d.clone().into();
    }
    if !user.tags.is_empty() {
        summary["Tags"] = json!(user.tags);
    }
    summary
}

/// Evaluates a `UserSearchCriteria`: `OrConditions`, `AndConditions` and `StringCondition`
/// (EXACT, STARTS_WITH, CONTAINS; case-insensitive) on Username, FirstName, LastName,
/// Id/ResourceId, RoutingProfileId, SecurityProfileId and HierarchyGroupId.
fn matches_criteria(criteria: &Value, user: &User) -> Result<bool, ApiError> {
    let Some(object) = criteria.as_object() else {
        return match criteria {
            Value::Null => Ok(true),
            _ => Err(ApiError::invalid_parameter(
                "SearchCriteria must be an object",
            )),
        };
    };
    for (key, value) in object {
        let ok = match key.as_str() {
            "OrConditions" => {
                let mut any = false;
                for c in conditions(value)? {
                    any |= matches_criteria(c, user)?;
                }
                any
            }
            "AndConditions" => {
                let mut all = true;
                for c in conditions(value)? {
                    all &= matches_criteria(c, user)?;
                }
                all
            }
            "StringCondition" => matches_string(value, user)?,
            other => {
                return Err(ApiError::invalid_parameter(format!(
                    "{other} is not supported by this emulator"
                )));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn conditions(value: &Value) -> Result<&Vec<Value>, ApiError> {
    value
        .as_array()
        .ok_or_else(|| ApiError::invalid_parameter("conditions must be a list"))
}

fn matches_string(condition: &Value, user: &User) -> Result<bool, ApiError> {
    let text = |key: &str| condition.get(key).and_then(Value::as_str);
    let field = text("FieldName")
        .ok_or_else(|| ApiError::invalid_parameter("StringCondition.FieldName is required"))?;
    let wanted = text("Value")
        .ok_or_else(|| ApiError::invalid_parameter("StringCondition.Value is required"))?
        .to_lowercase();
    let comparison = text("ComparisonType").unwrap_or("EXACT");
    let candidates: Vec<&str> = match field.to_ascii_lowercase().as_str() {
        "username" => vec![user.username.as_str()],
        "firstname" => user
            .identity_info
            .first_name
            .as_deref()
            .into_iter()
            .collect(),
        "lastname" => user
            .identity_info
            .last_name
            .as_deref()
            .into_iter()
            .collect(),
        "id" | "resourceid" => vec![user.id.as_str()],
        "routingprofileid" => vec![user.routing_profile_id.as_str()],
        "securityprofileid" | "securityprofileids" => user
            .security_profile_ids
            .iter()
            .map(String::as_str)
            .collect(),
        "hierarchygroupid" => user.hierarchy_group_id.as_deref().into_iter().collect(),
        _ => {
            return Err(ApiError::invalid_parameter(format!(
                "FieldName {field} is not supported"
            )));
        }
    };
    let test: fn(&str, &str) -> bool = match comparison {
        "EXACT" => |have, want| have == want,
        "STARTS_WITH" => |have, want| have.starts_with(want),
        "CONTAINS" => |have, want| have.contains(want),
        other => {
            return Err(ApiError::invalid_parameter(format!(
                "ComparisonType {other} is not supported"
            )));
        }
    };
    Ok(candidates
        .iter()
        .any(|have| test(&have.to_lowercase(), &wanted)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_arns_reduce_to_ids() {
        let id = "11111111-2222-3333-4444-555555555555";
        assert_eq!(
            instance_id_of(&format!(
                "arn:aws:connect:us-east-1:123456789012:instance/{id}"
            )),
            id
        );
        assert_eq!(instance_id_of(id), id);
        let user_arn = format!("arn:aws:connect:us-east-1:123456789012:instance/{id}/agent/u1");
        assert_eq!(instance_id_of(&user_arn), user_arn);
    }

    #[test]
    fn generated_ids_look_like_uuids_and_differ() {
        let store = Store::new(Account::default(), Seed::default()).unwrap();
        let a = store.new_id();
        let b = store.new_id();
        assert_ne!(a, b);
        let lengths: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(lengths, [8, 4, 4, 4, 12]);
        assert_eq!(&a[14..15], "4");
    }

    #[tokio::test(start_paused = true)]
    async fn token_bucket_refills_at_its_rate() {
        let store = Store::new(Account::default(), Seed::default()).unwrap();
        let op = Operation::UpdateUserIdentityInfo;
        store.set_quota(op, Some(2.0), Some(2)).unwrap();
        assert!(store.take_token(op));
        assert!(store.take_token(op));
        assert!(!store.take_token(op));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(store.take_token(op));
        assert!(!store.take_token(op));
        store.set_quota(op, None, None).unwrap();
        assert!((0..10).all(|_| store.take_token(op)));
    }
}
