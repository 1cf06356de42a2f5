//! The Amazon Connect adapter (`ConnectDirectory`) against a mocked SDK client
//! (`aws-smithy-mocks`): every modelled error variant of every operation it calls maps
//! to the failure class of the same name, anything unmodelled is `UnknownError`, no
//! failure message repeats a value that was sent or echoed, the success paths translate
//! Connect's shapes, and the caches spare calls.
//!
//! The clients are built by hand rather than with `mock_client!`, which needs the SDK's
//! `test-util` feature; they are otherwise what that macro builds. Unless a test name
//! says `with_retries`, the client has retries disabled, so each call is one attempt.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_connect::Client;
use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::timeout::TimeoutConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_sdk_connect::error::{ErrorMetadata, ProvideErrorMetadata};
use aws_sdk_connect::operation::describe_instance::{
    DescribeInstanceError, DescribeInstanceOutput,
};
use aws_sdk_connect::operation::describe_user::{DescribeUserError, DescribeUserOutput};
use aws_sdk_connect::operation::search_users::{
    SearchUsersError, SearchUsersInput, SearchUsersOutput,
};
use aws_sdk_connect::operation::update_user_identity_info::{
    UpdateUserIdentityInfoError, UpdateUserIdentityInfoInput, UpdateUserIdentityInfoOutput,
};
use aws_sdk_connect::types::error::{
    InternalServiceException, InvalidParameterException, InvalidRequestException,
    ResourceNotFoundException, ThrottlingException,
};
use aws_sdk_connect::types::{
    DirectoryType, Instance, StringComparisonType, User, UserIdentityInfo, UserSearchSummary,
};
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, SharedHttpConnector, http_client_fn,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;
use connect_identity_sync::domain::change::IdentityInfo;
use connect_identity_sync::domain::error::ErrorClass;
use connect_identity_sync::domain::identity::{InstanceId, UserId};
use connect_identity_sync::domain::instance::{IdentityManagement, UpdatePlan};
use connect_identity_sync::domain::ports::{CallFailure, Directory, Reach};
use connect_identity_sync::outbound::connect::ConnectDirectory;

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

const INSTANCE: &str = "8d3c2b1a-1111-4a4a-9b9b-0123456789ab";
const USER: &str = "f0e1d2c3-3333-4b4b-8c8c-ba9876543210";
const OTHER_USER: &str = "f0e1d2c3-4444-4b4b-8c8c-ba9876543210";

const FIRST_NAME: &str = "Zoë";
const LAST_NAME: &str = "Okonkwo-Smythe";
const EMAIL: &str = "zoe.okonkwo@example.com";
const SECONDARY_EMAIL: &str = "z.smythe@example.org";
const MOBILE: &str = "+447700900123";
const USERNAME: &str = "zoe.okonkwo";

/// Every personal value a request in these tests carries.
const PERSONAL: [&str; 6] = [
    FIRST_NAME,
    LAST_NAME,
    EMAIL,
    SECONDARY_EMAIL,
    MOBILE,
    USERNAME,
];

/// What a careless service might echo back in its error message.
fn echoed() -> String {
    format!(
        "Value '{FIRST_NAME} {LAST_NAME}' <{EMAIL}> / {SECONDARY_EMAIL} / {MOBILE} for user {USERNAME} is not valid"
    )
}

fn instance() -> InstanceId {
    InstanceId::parse(INSTANCE).expect("instance id")
}

fn user() -> UserId {
    UserId::parse(USER).expect("user id")
}

fn full_identity() -> IdentityInfo {
    IdentityInfo {
        first_name: Some(FIRST_NAME.into()),
        last_name: Some(LAST_NAME.into()),
        email: Some(EMAIL.into()),
        secondary_email: Some(SECONDARY_EMAIL.into()),
        mobile: Some(MOBILE.into()),
    }
}

fn full_plan() -> UpdatePlan {
    UpdatePlan {
        info: full_identity(),
        send_email: true,
    }
}

fn assert_no_personal_data(message: &str) {
    assert!(!message.is_empty(), "a failure has a message");
    for value in PERSONAL {
        assert!(
            !message.contains(value),
            "failure message {message:?} contains the personal value {value:?}"
        );
    }
    // Not even a recognisable piece of an address or a number.
    assert!(!message.contains('@'), "{message:?} holds an address");
    assert!(!message.contains("7700900"), "{message:?} holds a number");
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

fn base_config(rules: &[&Rule]) -> aws_sdk_connect::config::Builder {
    let mut mocks = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        mocks = mocks.with_rule(rule);
    }
    aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .http_client(create_mock_http_client())
        .interceptor(mocks)
}

/// A directory over mocked Connect, retries disabled: every call is one attempt.
fn directory(rules: &[&Rule]) -> ConnectDirectory {
    let config = base_config(rules)
        .retry_config(RetryConfig::disabled())
        .build();
    ConnectDirectory::new(Client::from_conf(config))
}

/// A directory whose HTTP client is given by `http`, no mock rules, retries disabled
/// as the function runs them.
fn directory_over(http: SharedHttpClient) -> ConnectDirectory {
    let config = aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .http_client(http)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_millis(100))
                .build(),
        )
        .build();
    ConnectDirectory::new(Client::from_conf(config))
}

/// A connection that is refused before any response; counts the requests tried.
#[derive(Debug, Default, Clone)]
struct Refused(Arc<std::sync::atomic::AtomicU32>);

impl HttpConnector for Refused {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        HttpConnectorFuture::ready(Err(ConnectorError::io("connection refused".into())))
    }
}

/// A connection that never answers.
#[derive(Debug)]
struct Silent;

impl HttpConnector for Silent {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::new(std::future::pending())
    }
}

/// A raw Connect error response, as the REST-JSON protocol sends it.
fn http_error(status: u16, error_type: &str) -> HttpResponse {
    let body = serde_json::json!({ "Message": echoed() }).to_string();
    let mut response =
        HttpResponse::new(StatusCode::try_from(status).expect("status"), body.into());
    response
        .headers_mut()
        .insert("x-amzn-ErrorType", error_type.to_owned());
    response
        .headers_mut()
        .insert("content-type", "application/json");
    response
}

fn access_denied() -> HttpResponse {
    http_error(403, "AccessDeniedException")
}

fn unknown_error_type() -> HttpResponse {
    http_error(400, "ConnectFutureQuotaException")
}

fn throttled() -> HttpResponse {
    http_error(429, "ThrottlingException")
}

fn internal_error() -> HttpResponse {
    http_error(500, "InternalServiceException")
}

// ---------------------------------------------------------------------------------------
// Modelled errors, one constructor per shape, carrying the code and an echoed message as
// Connect's deserializer would.
// ---------------------------------------------------------------------------------------

fn meta(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(echoed())
        .build()
}

fn invalid_request() -> InvalidRequestException {
    InvalidRequestException::builder()
        .message(echoed())
        .meta(meta("InvalidRequestException"))
        .build()
}

fn invalid_parameter() -> InvalidParameterException {
    InvalidParameterException::builder()
        .message(echoed())
        .meta(meta("InvalidParameterException"))
        .build()
}

fn resource_not_found() -> ResourceNotFoundException {
    ResourceNotFoundException::builder()
        .message(echoed())
        .meta(meta("ResourceNotFoundException"))
        .build()
}

fn throttling() -> ThrottlingException {
    ThrottlingException::builder()
        .message(echoed())
        .meta(meta("ThrottlingException"))
        .build()
}

fn internal_service() -> InternalServiceException {
    InternalServiceException::builder()
        .message(echoed())
        .meta(meta("InternalServiceException"))
        .build()
}

type Table<E> = Vec<(ErrorClass, fn() -> E)>;

/// DescribeInstance models three errors.
fn describe_instance_errors() -> Table<DescribeInstanceError> {
    vec![
        (ErrorClass::InvalidRequestException, || {
            DescribeInstanceError::InvalidRequestException(invalid_request())
        }),
        (ErrorClass::ResourceNotFoundException, || {
            DescribeInstanceError::ResourceNotFoundException(resource_not_found())
        }),
        (ErrorClass::InternalServiceException, || {
            DescribeInstanceError::InternalServiceException(internal_service())
        }),
    ]
}

fn search_users_errors() -> Table<SearchUsersError> {
    vec![
        (ErrorClass::InvalidRequestException, || {
            SearchUsersError::InvalidRequestException(invalid_request())
        }),
        (ErrorClass::InvalidParameterException, || {
            SearchUsersError::InvalidParameterException(invalid_parameter())
        }),
        (ErrorClass::ResourceNotFoundException, || {
            SearchUsersError::ResourceNotFoundException(resource_not_found())
        }),
        (ErrorClass::ThrottlingException, || {
            SearchUsersError::ThrottlingException(throttling())
        }),
        (ErrorClass::InternalServiceException, || {
            SearchUsersError::InternalServiceException(internal_service())
        }),
    ]
}

fn describe_user_errors() -> Table<DescribeUserError> {
    vec![
        (ErrorClass::InvalidRequestException, || {
            DescribeUserError::InvalidRequestException(invalid_request())
        }),
        (ErrorClass::InvalidParameterException, || {
            DescribeUserError::InvalidParameterException(invalid_parameter())
        }),
        (ErrorClass::ResourceNotFoundException, || {
            DescribeUserError::ResourceNotFoundException(resource_not_found())
        }),
        (ErrorClass::ThrottlingException, || {
            DescribeUserError::ThrottlingException(throttling())
        }),
        (ErrorClass::InternalServiceException, || {
            DescribeUserError::InternalServiceException(internal_service())
        }),
    ]
}

fn update_errors() -> Table<UpdateUserIdentityInfoError> {
    vec![
        (ErrorClass::InvalidRequestException, || {
            UpdateUserIdentityInfoError::InvalidRequestException(invalid_request())
        }),
        (ErrorClass::InvalidParameterException, || {
            UpdateUserIdentityInfoError::InvalidParameterException(invalid_parameter())
        }),
        (ErrorClass::ResourceNotFoundException, || {
            UpdateUserIdentityInfoError::ResourceNotFoundException(resource_not_found())
        }),
        (ErrorClass::ThrottlingException, || {
            UpdateUserIdentityInfoError::ThrottlingException(throttling())
        }),
        (ErrorClass::InternalServiceException, || {
            UpdateUserIdentityInfoError::InternalServiceException(internal_service())
        }),
    ]
}

/// The table pairs each variant with the class of its own name (guards the table).
fn assert_table_is_paired_by_name<E: ProvideErrorMetadata>(table: &Table<E>, expected: usize) {
    assert_eq!(table.len(), expected);
    for (class, error) in table {
        assert_eq!(error().code(), Some(class.as_str()));
    }
}

fn assert_classified(
    operation: &str,
    result: Result<impl std::fmt::Debug, CallFailure>,
    expected: ErrorClass,
) {
    let failure = result.expect_err(operation);
    assert_eq!(
        failure.failure.class, expected,
        "{operation} failing with {expected} is classified {expected}"
    );
    assert!(
        failure.failure.message.contains(operation),
        "{:?} names the operation {operation}",
        failure.failure.message
    );
    assert_no_personal_data(&failure.failure.message);
}

// ---------------------------------------------------------------------------------------
// Every modelled error variant of every operation
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn every_modelled_describe_instance_error_is_classified_by_its_own_name() {
    let table = describe_instance_errors();
    assert_table_is_paired_by_name(&table, 3);
    for (class, error) in table {
        let rule = mock!(Client::describe_instance).then_error(error);
        let connect = directory(&[&rule]);
        let result = connect.identity_management(&instance()).await;
        assert_classified("DescribeInstance", result, class);
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn every_modelled_search_users_error_is_classified_by_its_own_name() {
    let table = search_users_errors();
    assert_table_is_paired_by_name(&table, 5);
    for (class, error) in table {
        let rule = mock!(Client::search_users).then_error(error);
        let connect = directory(&[&rule]);
        let result = connect.find_user(&instance(), USERNAME).await;
        assert_classified("SearchUsers", result, class);
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn every_modelled_describe_user_error_is_classified_by_its_own_name() {
    let table = describe_user_errors();
    assert_table_is_paired_by_name(&table, 5);
    for (class, error) in table {
        let rule = mock!(Client::describe_user).then_error(error);
        let connect = directory(&[&rule]);
        let result = connect.describe_user(&instance(), &user()).await;
        assert_classified("DescribeUser", result, class);
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn every_modelled_update_user_identity_info_error_is_classified_by_its_own_name() {
    let table = update_errors();
    assert_table_is_paired_by_name(&table, 5);
    for (class, error) in table {
        let rule = mock!(Client::update_user_identity_info).then_error(error);
        let connect = directory(&[&rule]);
        let result = connect
            .update_identity(&instance(), &user(), &full_plan())
            .await;
        assert_classified("UpdateUserIdentityInfo", result, class);
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn a_throttled_update_is_classified_throttling_exception() {
    let rule = mock!(Client::update_user_identity_info)
        .then_error(|| UpdateUserIdentityInfoError::ThrottlingException(throttling()));
    let failure = directory(&[&rule])
        .update_identity(&instance(), &user(), &full_plan())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::ThrottlingException);
    assert!(failure.failure.class.is_retryable());
}

// ---------------------------------------------------------------------------------------
// Errors the operations do not model, and failures below the service
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Operation {
    DescribeInstance,
    SearchUsers,
    DescribeUser,
    UpdateUserIdentityInfo,
}

const OPERATIONS: [Operation; 4] = [
    Operation::DescribeInstance,
    Operation::SearchUsers,
    Operation::DescribeUser,
    Operation::UpdateUserIdentityInfo,
];

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::DescribeInstance => "DescribeInstance",
            Operation::SearchUsers => "SearchUsers",
            Operation::DescribeUser => "DescribeUser",
            Operation::UpdateUserIdentityInfo => "UpdateUserIdentityInfo",
        }
    }

    /// A rule answering this operation with the raw HTTP responses of `responses`, in turn.
    fn http_rule(self, response: fn() -> HttpResponse) -> Rule {
        match self {
            Operation::DescribeInstance => {
                mock!(Client::describe_instance).then_http_response(response)
            }
            Operation::SearchUsers => mock!(Client::search_users).then_http_response(response),
            Operation::DescribeUser => mock!(Client::describe_user).then_http_response(response),
            Operation::UpdateUserIdentityInfo => {
                mock!(Client::update_user_identity_info).then_http_response(response)
            }
        }
    }

    /// Calls the adapter method that makes this operation's request.
    async fn call(self, connect: &ConnectDirectory) -> Result<(), CallFailure> {
        match self {
            Operation::DescribeInstance => connect.identity_management(&instance()).await.map(drop),
            Operation::SearchUsers => connect.find_user(&instance(), USERNAME).await.map(drop),
            Operation::DescribeUser => connect.describe_user(&instance(), &user()).await.map(drop),
            Operation::UpdateUserIdentityInfo => {
                connect
                    .update_identity(&instance(), &user(), &full_plan())
                    .await
            }
        }
    }
}

#[tokio::test]
async fn access_denied_is_classified_unknown_error_for_every_operation() {
    for op in OPERATIONS {
        let rule = op.http_rule(access_denied);
        let connect = directory(&[&rule]);
        let result = op.call(&connect).await;
        assert_classified(op.name(), result, ErrorClass::UnknownError);
        assert_eq!(rule.num_calls(), 1, "{op:?}");
    }
}

#[tokio::test]
async fn an_error_type_connect_does_not_model_is_classified_unknown_error_for_every_operation() {
    for op in OPERATIONS {
        let rule = op.http_rule(unknown_error_type);
        let connect = directory(&[&rule]);
        let failure = op.call(&connect).await.unwrap_err();
        assert_eq!(failure.failure.class, ErrorClass::UnknownError, "{op:?}");
        assert!(
            failure.failure.message.contains("does not model"),
            "{op:?}: {:?} says the error is unmodelled",
            failure.failure.message
        );
        assert_no_personal_data(&failure.failure.message);
    }
}

#[tokio::test]
async fn a_modelled_error_sent_over_http_is_classified_like_the_modelled_variant() {
    // The same variants, through Connect's REST-JSON error deserializer.
    for op in [
        Operation::SearchUsers,
        Operation::DescribeUser,
        Operation::UpdateUserIdentityInfo,
    ] {
        for (response, class) in [
            (
                throttled as fn() -> HttpResponse,
                ErrorClass::ThrottlingException,
            ),
            (internal_error, ErrorClass::InternalServiceException),
            (
                || http_error(400, "InvalidParameterException"),
                ErrorClass::InvalidParameterException,
            ),
            (
                || http_error(404, "ResourceNotFoundException"),
                ErrorClass::ResourceNotFoundException,
            ),
        ] {
            let rule = op.http_rule(response);
            let result = op.call(&directory(&[&rule])).await;
            assert_classified(op.name(), result, class);
        }
    }
}

#[tokio::test]
async fn a_throttle_describe_instance_does_not_model_is_still_classified_throttling_exception() {
    // DescribeInstance models no ThrottlingException; the adapter reads the error code.
    let rule = Operation::DescribeInstance.http_rule(throttled);
    let failure = directory(&[&rule])
        .identity_management(&instance())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::ThrottlingException);
}

#[tokio::test]
async fn an_unreadable_success_response_is_classified_unknown_error() {
    let rule = mock!(Client::describe_user).then_http_response(|| {
        HttpResponse::new(
            StatusCode::try_from(200).expect("status"),
            format!("<html>{FIRST_NAME} {EMAIL}").into(),
        )
    });
    let failure = directory(&[&rule])
        .describe_user(&instance(), &user())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
    assert_no_personal_data(&failure.failure.message);
}

#[tokio::test]
async fn a_refused_connection_is_classified_unknown_error_without_retries() {
    let refused = Refused::default();
    let tried = Arc::clone(&refused.0);
    let http = http_client_fn(move |_, _| SharedHttpConnector::new(refused.clone()));
    let connect = directory_over(http);
    for (n, op) in (1..).zip(OPERATIONS) {
        let failure = op.call(&connect).await.unwrap_err();
        assert_eq!(failure.failure.class, ErrorClass::UnknownError, "{op:?}");
        // One request per call: the adapter makes one attempt, the pipeline retries.
        assert_eq!(tried.load(std::sync::atomic::Ordering::SeqCst), n, "{op:?}");
        assert_no_personal_data(&failure.failure.message);
    }
}

#[tokio::test]
async fn a_call_that_times_out_is_classified_unknown_error_without_retries() {
    let http = http_client_fn(|_, _| SharedHttpConnector::new(Silent));
    let connect = directory_over(http);
    let failure = connect
        .update_identity(&instance(), &user(), &full_plan())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
    assert!(
        failure.failure.message.contains("timeout"),
        "{:?}",
        failure.failure.message
    );
    assert_no_personal_data(&failure.failure.message);
}

// ---------------------------------------------------------------------------------------
// How far a failed call got
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_error_connect_answered_says_connect_did_not_act() {
    let rule = mock!(Client::update_user_identity_info)
        .then_error(|| UpdateUserIdentityInfoError::InvalidParameterException(invalid_parameter()));
    let failure = directory(&[&rule])
        .update_identity(&instance(), &user(), &full_plan())
        .await
        .unwrap_err();
    assert_eq!(failure.reach, Reach::Answered);
}

#[tokio::test]
async fn a_call_that_times_out_leaves_its_outcome_unknown() {
    let http = http_client_fn(|_, _| SharedHttpConnector::new(Silent));
    let connect = directory_over(http);
    let failure = connect
        .update_identity(&instance(), &user(), &full_plan())
        .await
        .unwrap_err();
    assert_eq!(failure.reach, Reach::Unknown);
}

/// A connection that breaks after the request went out.
#[derive(Debug)]
struct Broken;

impl HttpConnector for Broken {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Err(ConnectorError::io(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionReset,
        )))))
    }
}

#[tokio::test]
async fn a_connection_broken_after_sending_leaves_the_outcome_unknown() {
    let http = http_client_fn(|_, _| SharedHttpConnector::new(Broken));
    let connect = directory_over(http);
    for op in OPERATIONS {
        let failure = op.call(&connect).await.unwrap_err();
        assert_eq!(failure.reach, Reach::Unknown, "{op:?}");
    }
}

#[tokio::test]
async fn a_connection_refused_by_a_real_closed_port_was_never_sent() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("eu-west-2"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "tests"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(2))
                .operation_attempt_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    let connect = ConnectDirectory::new(Client::from_conf(config));
    let failure = connect
        .update_identity(&instance(), &user(), &full_plan())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
    assert_eq!(failure.reach, Reach::NotSent, "{failure:?}");
    assert!(
        failure.failure.message.contains("refused"),
        "{}",
        failure.failure.message
    );
}

// ---------------------------------------------------------------------------------------
// DescribeInstance success: identity management
// ---------------------------------------------------------------------------------------

fn instance_of(kind: DirectoryType) -> DescribeInstanceOutput {
    DescribeInstanceOutput::builder()
        .instance(
            Instance::builder()
                .id(INSTANCE)
                .identity_management_type(kind)
                .build(),
        )
        .build()
}

#[tokio::test]
async fn describe_instance_maps_each_identity_management_type() {
    for (kind, expected) in [
        (DirectoryType::Saml, IdentityManagement::Saml),
        (
            DirectoryType::ConnectManaged,
            IdentityManagement::ConnectManaged,
        ),
        (
            DirectoryType::ExistingDirectory,
            IdentityManagement::ExistingDirectory,
        ),
        (
            DirectoryType::from("SOME_FUTURE_TYPE"),
            IdentityManagement::Other("SOME_FUTURE_TYPE".into()),
        ),
    ] {
        let rule = mock!(Client::describe_instance)
            .match_requests(|req| req.instance_id() == Some(INSTANCE))
            .then_output(move || instance_of(kind.clone()));
        let got = directory(&[&rule])
            .identity_management(&instance())
            .await
            .expect("described");
        assert_eq!(got, expected);
    }
}

// ---------------------------------------------------------------------------------------
// SearchUsers success: the exact Username, not found, cached
// ---------------------------------------------------------------------------------------

fn summary(username: &str, id: &str) -> UserSearchSummary {
    UserSearchSummary::builder()
        .username(username)
        .id(id)
        .arn(format!(
            "arn:aws:connect:eu-west-2:111122223333:instance/{INSTANCE}/agent/{id}"
        ))
        .build()
}

fn capture_search(
    seen: &Arc<Mutex<Vec<SearchUsersInput>>>,
) -> impl Fn(&SearchUsersInput) -> bool + Send + Sync + 'static {
    let seen = Arc::clone(seen);
    move |req| {
        seen.lock().unwrap().push(req.clone());
        true
    }
}

#[tokio::test]
async fn search_users_asks_for_the_exact_username_on_the_instance() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rule = mock!(Client::search_users)
        .match_requests(capture_search(&seen))
        .then_output(|| {
            SearchUsersOutput::builder()
                .users(summary(USERNAME, USER))
                .approximate_total_count(1)
                .build()
        });
    let found = directory(&[&rule])
        .find_user(&instance(), USERNAME)
        .await
        .unwrap();
    assert_eq!(found, user());
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.instance_id(), Some(INSTANCE));
    let condition = req
        .search_criteria()
        .and_then(|c| c.string_condition())
        .expect("a string condition");
    assert_eq!(condition.field_name(), Some("Username"));
    assert_eq!(condition.value(), Some(USERNAME));
    assert_eq!(
        condition.comparison_type(),
        Some(&StringComparisonType::Exact)
    );
}

#[tokio::test]
async fn search_users_resolves_the_user_whose_username_matches_exactly() {
    // Connect may return near matches; the exact one wins wherever it is in the list.
    let rule = mock!(Client::search_users).then_output(|| {
        SearchUsersOutput::builder()
            .users(summary("ZOE.OKONKWO", OTHER_USER))
            .users(summary("zoe.okonkwo2", OTHER_USER))
            .users(summary(USERNAME, USER))
            .build()
    });
    let found = directory(&[&rule])
        .find_user(&instance(), USERNAME)
        .await
        .unwrap();
    assert_eq!(found, user());
}

#[tokio::test]
async fn search_users_without_a_matching_user_is_classified_resource_not_found() {
    for users in [vec![], vec![summary("zoe.okonkwo2", OTHER_USER)]] {
        let rule = mock!(Client::search_users).then_output(move || {
            SearchUsersOutput::builder()
                .set_users(Some(users.clone()))
                .build()
        });
        let failure = directory(&[&rule])
            .find_user(&instance(), USERNAME)
            .await
            .unwrap_err();
        assert_eq!(failure.failure.class, ErrorClass::ResourceNotFoundException);
        assert!(!failure.failure.class.is_retryable());
        assert_no_personal_data(&failure.failure.message);
    }
}

#[tokio::test]
async fn a_username_not_found_is_looked_up_again_next_time() {
    let rule = mock!(Client::search_users)
        .sequence()
        .output(|| SearchUsersOutput::builder().build())
        .output(|| {
            SearchUsersOutput::builder()
                .users(summary(USERNAME, USER))
                .build()
        })
        .build();
    let connect = directory(&[&rule]);
    assert!(connect.find_user(&instance(), USERNAME).await.is_err());
    assert_eq!(
        connect.find_user(&instance(), USERNAME).await.unwrap(),
        user()
    );
    assert_eq!(rule.num_calls(), 2);
}

// ---------------------------------------------------------------------------------------
// DescribeUser success
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn describe_user_maps_identity_info_and_security_profiles() {
    let rule = mock!(Client::describe_user)
        .match_requests(|req| req.instance_id() == Some(INSTANCE) && req.user_id() == Some(USER))
        .then_output(|| {
            DescribeUserOutput::builder()
                .user(
                    User::builder()
                        .id(USER)
                        .username(USERNAME)
                        .identity_info(
                            UserIdentityInfo::builder()
                                .first_name(FIRST_NAME)
                                .last_name(LAST_NAME)
                                .email(EMAIL)
                                .secondary_email(SECONDARY_EMAIL)
                                .mobile(MOBILE)
                                .build(),
                        )
                        .security_profile_ids("sp-agent")
                        .security_profile_ids("sp-supervisor")
                        .build(),
                )
                .build()
        });
    let record = directory(&[&rule])
        .describe_user(&instance(), &user())
        .await
        .unwrap();
    assert_eq!(record.info, full_identity());
    assert_eq!(
        record.security_profile_ids,
        vec!["sp-agent".to_owned(), "sp-supervisor".to_owned()]
    );
}

#[tokio::test]
async fn describe_user_reads_empty_and_absent_fields_as_none() {
    let rule = mock!(Client::describe_user).then_output(|| {
        DescribeUserOutput::builder()
            .user(
                User::builder()
                    .id(USER)
                    .identity_info(
                        UserIdentityInfo::builder()
                            .first_name(FIRST_NAME)
                            .last_name("")
                            .email("")
                            .secondary_email("")
                            .build(),
                    )
                    .build(),
            )
            .build()
    });
    let record = directory(&[&rule])
        .describe_user(&instance(), &user())
        .await
        .unwrap();
    assert_eq!(
        record.info,
        IdentityInfo {
            first_name: Some(FIRST_NAME.into()),
            ..IdentityInfo::default()
        }
    );
    assert!(record.security_profile_ids.is_empty());
}

#[tokio::test]
async fn describe_user_without_identity_info_is_classified_unknown_error_not_an_empty_identity() {
    let rule = mock!(Client::describe_user).then_output(|| {
        DescribeUserOutput::builder()
            .user(
                User::builder()
                    .id(USER)
                    .security_profile_ids("sp-agent")
                    .build(),
            )
            .build()
    });
    let failure = directory(&[&rule])
        .describe_user(&instance(), &user())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
    assert!(failure.failure.message.contains("IdentityInfo"));
}

#[tokio::test]
async fn describe_user_returning_no_user_is_classified_unknown_error() {
    let rule = mock!(Client::describe_user).then_output(|| DescribeUserOutput::builder().build());
    let failure = directory(&[&rule])
        .describe_user(&instance(), &user())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
}

// ---------------------------------------------------------------------------------------
// UpdateUserIdentityInfo: the complete identity
// ---------------------------------------------------------------------------------------

/// Updates with `plan` and returns the one request Connect received.
async fn sent_update(plan: &UpdatePlan) -> UpdateUserIdentityInfoInput {
    let seen = Arc::new(Mutex::new(Vec::<UpdateUserIdentityInfoInput>::new()));
    let capture = Arc::clone(&seen);
    let rule = mock!(Client::update_user_identity_info)
        .match_requests(move |req| {
            capture.lock().unwrap().push(req.clone());
            true
        })
        .then_output(|| UpdateUserIdentityInfoOutput::builder().build());
    directory(&[&rule])
        .update_identity(&instance(), &user(), plan)
        .await
        .expect("updated");
    assert_eq!(rule.num_calls(), 1);
    let mut seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    seen.remove(0)
}

#[tokio::test]
async fn an_update_sends_all_five_identity_fields() {
    let req = sent_update(&full_plan()).await;
    assert_eq!(req.instance_id(), Some(INSTANCE));
    assert_eq!(req.user_id(), Some(USER));
    let info = req.identity_info().expect("identity info");
    assert_eq!(info.first_name(), Some(FIRST_NAME));
    assert_eq!(info.last_name(), Some(LAST_NAME));
    assert_eq!(info.email(), Some(EMAIL));
    assert_eq!(info.secondary_email(), Some(SECONDARY_EMAIL));
    assert_eq!(info.mobile(), Some(MOBILE));
}

#[tokio::test]
async fn an_update_without_send_email_omits_email_and_keeps_the_rest() {
    let plan = UpdatePlan {
        info: full_identity(),
        send_email: false,
    };
    let req = sent_update(&plan).await;
    let info = req.identity_info().expect("identity info");
    assert_eq!(info.email(), None);
    assert_eq!(info.first_name(), Some(FIRST_NAME));
    assert_eq!(info.last_name(), Some(LAST_NAME));
    assert_eq!(info.secondary_email(), Some(SECONDARY_EMAIL));
    assert_eq!(info.mobile(), Some(MOBILE));
}

#[tokio::test]
async fn an_update_leaves_out_the_fields_the_identity_does_not_have() {
    let plan = UpdatePlan {
        info: IdentityInfo {
            first_name: Some(FIRST_NAME.into()),
            last_name: Some(LAST_NAME.into()),
            email: Some(EMAIL.into()),
            secondary_email: None,
            mobile: None,
        },
        send_email: true,
    };
    let req = sent_update(&plan).await;
    let info = req.identity_info().expect("identity info");
    assert_eq!(info.email(), Some(EMAIL));
    assert_eq!(info.secondary_email(), None);
    assert_eq!(info.mobile(), None);
}

#[tokio::test]
async fn a_username_that_matches_only_by_case_is_not_found() {
    // Another capitalisation may be another account; only the exact Username resolves.
    let rule = mock!(Client::search_users).then_output(|| {
        SearchUsersOutput::builder()
            .users(summary(&USERNAME.to_uppercase(), OTHER_USER))
            .build()
    });
    let failure = directory(&[&rule])
        .find_user(&instance(), USERNAME)
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::ResourceNotFoundException);
}

#[tokio::test]
async fn an_instance_described_without_its_identity_management_type_fails_safe() {
    let rule =
        mock!(Client::describe_instance).then_output(|| DescribeInstanceOutput::builder().build());
    let failure = directory(&[&rule])
        .identity_management(&instance())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
}

#[tokio::test]
async fn a_limit_exceeded_error_is_not_taken_for_a_throttle() {
    let rule = mock!(Client::describe_instance)
        .then_http_response(|| http_error(429, "LimitExceededException"));
    let failure = directory(&[&rule])
        .identity_management(&instance())
        .await
        .unwrap_err();
    assert_eq!(failure.failure.class, ErrorClass::UnknownError);
}
