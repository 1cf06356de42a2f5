//! Drives the emulator with the real `aws-sdk-connect` client over HTTP: if the SDK can call
//! every operation and reads every error as its typed variant, the product's code will see the
//! same wire behaviour from the emulator as from Amazon Connect.

use std::time::{Duration, Instant};

use aws_sdk_connect::Client;
use aws_sdk_connect::config::retry::RetryConfig;
use aws_sdk_connect::config::timeout::TimeoutConfig;
use aws_sdk_connect::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_connect::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_connect::operation::create_user::CreateUserError;
use aws_sdk_connect::operation::describe_instance::DescribeInstanceError;
use aws_sdk_connect::operation::describe_user::DescribeUserError;
use aws_sdk_connect::operation::search_users::SearchUsersError;
use aws_sdk_connect::operation::update_user_identity_info::UpdateUserIdentityInfoError;
use aws_sdk_connect::types::{
    PhoneType, StringComparisonType, StringCondition, UserIdentityInfo, UserPhoneConfig,
    UserSearchCriteria,
};
use connect_emulator::{
    CallCounts, Emulator, EmulatorHandle, Fault, IdentityManagementType, Operation, Seed,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANAGED: &str = "11111111-2222-3333-4444-555555555555";
const SAML: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const DIRECTORY: &str = "dddddddd-0000-0000-0000-000000000000";

async fn emulator() -> EmulatorHandle {
    let emulator = Emulator::start("127.0.0.1:0").await.unwrap();
    emulator
        .seed_json(json!({
            "instances": [
                {"id": MANAGED, "identityManagementType": "CONNECT_MANAGED", "alias": "support"},
                {"id": SAML, "identityManagementType": "SAML", "alias": "sales"},
                {"id": DIRECTORY, "identityManagementType": "EXISTING_DIRECTORY", "alias": "ops"}
            ],
            "users": [
                {"instanceId": MANAGED, "id": "u-jdoe", "username": "jdoe",
                 "identityInfo": {"FirstName": "Jane", "LastName": "Doe",
                                  "Email": "jane.doe@example.com",
                                  "SecondaryEmail": "jd@example.com",
                                  "Mobile": "+14155550123"},
                 "securityProfileIds": ["sp-agent"]},
                {"instanceId": MANAGED, "id": "u-asmith", "username": "asmith",
                 "identityInfo": {"FirstName": "Alex", "LastName": "Smith"},
                 "securityProfileIds": ["sp-agent"]},
                {"instanceId": SAML, "id": "u-saml", "username": "lchen",
                 "identityInfo": {"FirstName": "Li", "LastName": "Chen",
                                  "Email": "li.chen@example.com"}},
                {"instanceId": DIRECTORY, "id": "u-dir", "username": "rkhan",
                 "identityInfo": {"FirstName": "Rina", "LastName": "Khan",
                                  "Email": "rina.khan@example.com"}}
            ]
        }))
        .unwrap();
    emulator
}

fn config(emulator: &EmulatorHandle) -> aws_sdk_connect::config::Builder {
    aws_sdk_connect::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(emulator.endpoint_url())
        .credentials_provider(Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            None,
            "test",
        ))
}

/// A client that does not retry, so each call is one request and errors surface as they are.
fn client(emulator: &EmulatorHandle) -> Client {
    Client::from_conf(
        config(emulator)
            .retry_config(RetryConfig::disabled())
            .build(),
    )
}

fn identity(first: &str, last: &str) -> aws_sdk_connect::types::builders::UserIdentityInfoBuilder {
    UserIdentityInfo::builder()
        .first_name(first)
        .last_name(last)
}

async fn update(
    client: &Client,
    instance: &str,
    user: &str,
    info: aws_sdk_connect::types::builders::UserIdentityInfoBuilder,
) -> Result<(), UpdateUserIdentityInfoError> {
    client
        .update_user_identity_info()
        .instance_id(instance)
        .user_id(user)
        .identity_info(info.build())
        .send()
        .await
        .map(|_| ())
        .map_err(SdkError::into_service_error)
}

#[tokio::test]
async fn describe_instance_round_trips_by_id_and_by_arn() {
    let emulator = emulator().await;
    let client = client(&emulator);
    for reference in [MANAGED.to_owned(), emulator.instance_arn(MANAGED)] {
        let out = client
            .describe_instance()
            .instance_id(&reference)
            .send()
            .await
            .unwrap();
        let instance = out.instance().unwrap();
        assert_eq!(instance.id(), Some(MANAGED));
        assert_eq!(
            instance.arn(),
            Some(format!("arn:aws:connect:us-east-1:123456789012:instance/{MANAGED}").as_str())
        );
        assert_eq!(
            instance.identity_management_type().map(|t| t.as_str()),
            Some("CONNECT_MANAGED")
        );
        assert_eq!(instance.instance_alias(), Some("support"));
        assert_eq!(
            instance.instance_status().map(|s| s.as_str()),
            Some("ACTIVE")
        );
    }
    let saml = client
        .describe_instance()
        .instance_id(SAML)
        .send()
        .await
        .unwrap();
    assert_eq!(
        saml.instance()
            .unwrap()
            .identity_management_type()
            .unwrap()
            .as_str(),
        "SAML"
    );
}

#[tokio::test]
async fn unknown_instance_is_resource_not_found() {
    let emulator = emulator().await;
    let err = client(&emulator)
        .describe_instance()
        .instance_id("99999999-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeInstanceError::ResourceNotFoundException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn describe_user_round_trips_with_identity_and_profiles() {
    let emulator = emulator().await;
    let client = client(&emulator);
    for reference in [MANAGED.to_owned(), emulator.instance_arn(MANAGED)] {
        let out = client
            .describe_user()
            .instance_id(&reference)
            .user_id("u-jdoe")
            .send()
            .await
            .unwrap();
        let user = out.user().unwrap();
        assert_eq!(user.id(), Some("u-jdoe"));
        assert_eq!(user.username(), Some("jdoe"));
        assert_eq!(
            user.arn(),
            Some(emulator.user_arn(MANAGED, "u-jdoe").as_str())
        );
        let info = user.identity_info().unwrap();
        assert_eq!(info.first_name(), Some("Jane"));
        assert_eq!(info.last_name(), Some("Doe"));
        assert_eq!(info.email(), Some("jane.doe@example.com"));
        assert_eq!(info.secondary_email(), Some("jd@example.com"));
        assert_eq!(info.mobile(), Some("+14155550123"));
        assert_eq!(user.security_profile_ids(), ["sp-agent"]);
        assert_eq!(
            user.phone_config().unwrap().phone_type(),
            &PhoneType::SoftPhone
        );
        assert!(user.routing_profile_id().is_some());
    }
}

#[tokio::test]
async fn unknown_user_is_resource_not_found_for_describe_and_update() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let err = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("nobody")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeUserError::ResourceNotFoundException(_)),
        "{err:?}"
    );
    assert!(err.message().is_some());
    let err = update(&client, MANAGED, "nobody", identity("A", "B"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpdateUserIdentityInfoError::ResourceNotFoundException(_)
        ),
        "{err:?}"
    );
    let err = update(&client, "no-such-instance", "u-jdoe", identity("A", "B"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpdateUserIdentityInfoError::ResourceNotFoundException(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn update_user_identity_info_is_a_full_replace() {
    let emulator = emulator().await;
    let client = client(&emulator);
    update(
        &client,
        MANAGED,
        "u-jdoe",
        identity("Janet", "Doe").email("janet.doe@example.com"),
    )
    .await
    .unwrap();
    let out = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
    let info = out.user().unwrap().identity_info().unwrap();
    assert_eq!(info.first_name(), Some("Janet"));
    assert_eq!(info.email(), Some("janet.doe@example.com"));
    assert_eq!(info.secondary_email(), None, "omitted fields are cleared");
    assert_eq!(info.mobile(), None, "omitted fields are cleared");
    let state = emulator.user(MANAGED, "u-jdoe").unwrap();
    assert_eq!(state.identity_info.mobile, None);
    assert_eq!(state.identity_info.first_name.as_deref(), Some("Janet"));
}

#[tokio::test]
async fn update_through_an_instance_arn_reaches_the_user() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let arn = emulator.instance_arn(MANAGED);
    update(&client, &arn, "u-asmith", identity("Alexandra", "Smith"))
        .await
        .unwrap();
    assert_eq!(
        emulator
            .user(MANAGED, "u-asmith")
            .unwrap()
            .identity_info
            .first_name
            .as_deref(),
        Some("Alexandra")
    );
    let journal = emulator.calls(Operation::UpdateUserIdentityInfo);
    assert_eq!(journal[0].instance_id.as_deref(), Some(MANAGED));
}

#[tokio::test]
async fn field_rules_are_invalid_parameter_exceptions() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let cases = [
        identity("Jane", "Doe").mobile("4155550123"),
        identity("Jane", "Doe").mobile("+04155550123"),
        identity("Jane", "Doe").mobile("+1415555012345678"),
        identity("Jane", "Doe").email("not-an-email"),
        identity("Jane", "Doe").secondary_email("a@b.c"),
        identity("Jane", "Doe").email(format!("{}@example.com", "a".repeat(260))),
        identity(&"x".repeat(256), "Doe"),
        identity("Jane", &"y".repeat(301)),
        identity("Rene\u{301}e", "Doe"),
    ];
    for case in cases {
        let err = update(&client, MANAGED, "u-jdoe", case).await.unwrap_err();
        assert!(
            matches!(
                err,
                UpdateUserIdentityInfoError::InvalidParameterException(_)
            ),
            "{err:?}"
        );
    }
    update(
        &client,
        MANAGED,
        "u-jdoe",
        identity(&"x".repeat(255), &"y".repeat(300)),
    )
    .await
    .unwrap();
    update(&client, MANAGED, "u-jdoe", identity("Ren\u{e9}e", "Doe"))
        .await
        .unwrap();
}

#[tokio::test]
async fn connect_managed_refuses_empty_names() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let err = update(&client, MANAGED, "u-jdoe", identity("", "Doe"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpdateUserIdentityInfoError::InvalidParameterException(_)
        ),
        "{err:?}"
    );
    let err = update(
        &client,
        MANAGED,
        "u-jdoe",
        UserIdentityInfo::builder().first_name("Jane"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            UpdateUserIdentityInfoError::InvalidParameterException(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn saml_refuses_an_email_change_and_keeps_an_omitted_email() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let err = update(
        &client,
        SAML,
        "u-saml",
        identity("Li", "Chen").email("li@example.com"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, UpdateUserIdentityInfoError::InvalidRequestException(_)),
        "{err:?}"
    );
    let err = update(&client, SAML, "u-saml", identity("Li", ""))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            UpdateUserIdentityInfoError::InvalidParameterException(_)
        ),
        "{err:?}"
    );

    update(
        &client,
        SAML,
        "u-saml",
        identity("Lily", "Chen").mobile("+14155550150"),
    )
    .await
    .unwrap();
    update(
        &client,
        SAML,
        "u-saml",
        identity("Lily", "Chen").email("li.chen@example.com"),
    )
    .await
    .unwrap();
    let info = emulator.user(SAML, "u-saml").unwrap().identity_info;
    assert_eq!(info.first_name.as_deref(), Some("Lily"));
    assert_eq!(info.email.as_deref(), Some("li.chen@example.com"));
}

#[tokio::test]
async fn existing_directory_refuses_changes_to_names_and_email() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let current = || identity("Rina", "Khan").email("rina.khan@example.com");
    for changed in [
        identity("Rina", "Khan").email("rk@example.com"),
        identity("Rin", "Khan").email("rina.khan@example.com"),
        identity("Rina", "Kahn").email("rina.khan@example.com"),
    ] {
        let err = update(&client, DIRECTORY, "u-dir", changed)
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpdateUserIdentityInfoError::InvalidRequestException(_)),
            "{err:?}"
        );
    }
    update(
        &client,
        DIRECTORY,
        "u-dir",
        current().mobile("+442071838750"),
    )
    .await
    .unwrap();
    let user = emulator.user(DIRECTORY, "u-dir").unwrap();
    assert_eq!(user.identity_info.mobile.as_deref(), Some("+442071838750"));
    assert_eq!(
        emulator
            .instance(DIRECTORY)
            .unwrap()
            .identity_management_type,
        IdentityManagementType::ExistingDirectory
    );
}

#[tokio::test]
async fn search_users_finds_a_username_exactly_and_ignores_case() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let by = |field: &str, value: &str, comparison: StringComparisonType| {
        UserSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name(field)
                    .value(value)
                    .comparison_type(comparison)
                    .build(),
            )
            .build()
    };
    let out = client
        .search_users()
        .instance_id(MANAGED)
        .search_criteria(by("Username", "JDoe", StringComparisonType::Exact))
        .send()
        .await
        .unwrap();
    assert_eq!(out.approximate_total_count(), Some(1));
    let user = &out.users()[0];
    assert_eq!(user.id(), Some("u-jdoe"));
    assert_eq!(user.username(), Some("jdoe"));
    assert_eq!(
        user.arn(),
        Some(emulator.user_arn(MANAGED, "u-jdoe").as_str())
    );
    assert_eq!(user.identity_info().unwrap().first_name(), Some("Jane"));

    let out = client
        .search_users()
        .instance_id(emulator.instance_arn(MANAGED))
        .search_criteria(by("Id", "u-asmith", StringComparisonType::Exact))
        .send()
        .await
        .unwrap();
    assert_eq!(out.users()[0].username(), Some("asmith"));

    let out = client
        .search_users()
        .instance_id(MANAGED)
        .search_criteria(by("Username", "jdo", StringComparisonType::Exact))
        .send()
        .await
        .unwrap();
    assert!(out.users().is_empty());
    assert_eq!(out.approximate_total_count(), Some(0));

    let out = client
        .search_users()
        .instance_id(MANAGED)
        .send()
        .await
        .unwrap();
    assert_eq!(out.approximate_total_count(), Some(2));

    let err = client
        .search_users()
        .instance_id("missing")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, SearchUsersError::ResourceNotFoundException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn search_users_pages_with_next_token() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let first = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(1)
        .send()
        .await
        .unwrap();
    assert_eq!(first.users().len(), 1);
    let token = first.next_token().unwrap();
    let second = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(1)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(second.users().len(), 1);
    assert_ne!(first.users()[0].id(), second.users()[0].id());
    assert!(second.next_token().is_none());
}

#[tokio::test]
async fn list_users_lists_every_user_and_paginates() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let out = client
        .list_users()
        .instance_id(MANAGED)
        .send()
        .await
        .unwrap();
    let names: Vec<_> = out
        .user_summary_list()
        .iter()
        .filter_map(|u| u.username())
        .collect();
    assert_eq!(names, ["jdoe", "asmith"]);
    assert_eq!(
        out.user_summary_list()[0].arn(),
        Some(emulator.user_arn(MANAGED, "u-jdoe").as_str())
    );
    let pages: Vec<_> = client
        .list_users()
        .instance_id(MANAGED)
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), 2);
}

#[tokio::test]
async fn create_user_seeds_a_user_and_refuses_a_duplicate_username() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let create = || {
        client
            .create_user()
            .instance_id(MANAGED)
            .username("bnguyen")
            .identity_info(
                identity("Bao", "Nguyen")
                    .email("bao.nguyen@example.com")
                    .build(),
            )
            .phone_config(
                UserPhoneConfig::builder()
                    .phone_type(PhoneType::SoftPhone)
                    .build(),
            )
            .security_profile_ids("sp-agent")
            .routing_profile_id("rp-1")
    };
    let out = create().send().await.unwrap();
    let id = out.user_id().unwrap();
    assert_eq!(
        out.user_arn(),
        Some(emulator.user_arn(MANAGED, id).as_str())
    );
    let user = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(user.user().unwrap().username(), Some("bnguyen"));
    assert_eq!(user.user().unwrap().routing_profile_id(), Some("rp-1"));
    let err = create().send().await.unwrap_err().into_service_error();
    assert!(
        matches!(err, CreateUserError::DuplicateResourceException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn faults_count_down_and_arrive_as_typed_errors() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.inject_fault(
        Fault::new(Operation::UpdateUserIdentityInfo, "ThrottlingException", 2)
            .with_message("slow down"),
    );
    for _ in 0..2 {
        let err = update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpdateUserIdentityInfoError::ThrottlingException(_)),
            "{err:?}"
        );
        assert_eq!(err.message(), Some("slow down"));
    }
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    assert!(emulator.faults().is_empty());

    emulator.inject_fault(Fault::new(
        Operation::DescribeUser,
        "InternalServiceException",
        1,
    ));
    let err = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        matches!(err, DescribeUserError::InternalServiceException(_)),
        "{err:?}"
    );
    let statuses: Vec<_> = emulator.journal().iter().map(|e| e.status).collect();
    assert_eq!(statuses, [429, 429, 200, 500]);
}

#[tokio::test]
async fn a_fault_for_one_user_leaves_other_users_alone() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.inject_fault(
        Fault::new(
            Operation::UpdateUserIdentityInfo,
            "InvalidRequestException",
            1,
        )
        .for_user("u-asmith"),
    );
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    let err = update(&client, MANAGED, "u-asmith", identity("Alex", "Smith"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, UpdateUserIdentityInfoError::InvalidRequestException(_)),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unmodelled_error_is_unhandled_with_its_code() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.inject_fault(Fault::new(
        Operation::UpdateUserIdentityInfo,
        "SomethingWeird",
        1,
    ));
    let err = update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap_err();
    let modelled = err.is_internal_service_exception()
        || err.is_invalid_parameter_exception()
        || err.is_invalid_request_exception()
        || err.is_resource_not_found_exception()
        || err.is_throttling_exception();
    assert!(!modelled, "{err:?}");
    assert_eq!(err.code(), Some("SomethingWeird"));
    assert_eq!(emulator.journal()[0].status, 400);
}

#[tokio::test]
async fn the_sdk_retries_injected_throttling_and_succeeds() {
    let emulator = emulator().await;
    let client = Client::from_conf(
        config(&emulator)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build(),
    );
    emulator.inject_fault(Fault::new(
        Operation::UpdateUserIdentityInfo,
        "ThrottlingException",
        2,
    ));
    client
        .update_user_identity_info()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .identity_info(identity("Jane", "Doe").build())
        .send()
        .await
        .unwrap();
    assert_eq!(emulator.calls(Operation::UpdateUserIdentityInfo).len(), 3);
}

#[tokio::test]
async fn a_quota_turns_excess_calls_into_throttling_exceptions() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.set_quota(Operation::UpdateUserIdentityInfo, 0.5, 2);
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    let err = update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, UpdateUserIdentityInfoError::ThrottlingException(_)),
        "{err:?}"
    );
    // Other operations are not limited by this quota.
    client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
    emulator.clear_quota(Operation::UpdateUserIdentityInfo);
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_quota_refills_at_its_rate() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.set_quota(Operation::DescribeUser, 10.0, 1);
    let describe = || {
        client
            .describe_user()
            .instance_id(MANAGED)
            .user_id("u-jdoe")
            .send()
    };
    describe().await.unwrap();
    assert!(describe().await.is_err());
    tokio::time::sleep(Duration::from_millis(150)).await;
    describe().await.unwrap();
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.set_latency(Operation::DescribeUser, Duration::from_millis(300));
    let started = Instant::now();
    client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_timeout_fault_outlasts_the_client_timeout() {
    let emulator = emulator().await;
    let client = Client::from_conf(
        config(&emulator)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(200))
                    .build(),
            )
            .build(),
    );
    emulator.inject_fault(Fault::new(Operation::UpdateUserIdentityInfo, "Timeout", 1));
    let err = client
        .update_user_identity_info()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .identity_info(identity("Jane", "Doe").build())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
}

#[tokio::test]
async fn a_late_fault_applies_the_request_after_the_client_gave_up() {
    let emulator = emulator().await;
    let client = Client::from_conf(
        config(&emulator)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(200))
                    .build(),
            )
            .build(),
    );
    emulator
        .inject_fault(Fault::new(Operation::UpdateUserIdentityInfo, "Late", 1).with_delay_ms(600));
    let err = client
        .update_user_identity_info()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .identity_info(identity("Janet", "Late").build())
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::TimeoutError(_)), "{err:?}");
    let last_name = || {
        emulator
            .user(MANAGED, "u-jdoe")
            .unwrap()
            .identity_info
            .last_name
    };
    assert_ne!(last_name().as_deref(), Some("Late"), "not applied yet");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        last_name().as_deref(),
        Some("Late"),
        "landed after the timeout"
    );
}

#[tokio::test]
async fn a_disconnect_fault_drops_the_connection() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.inject_fault(Fault::new(Operation::DescribeUser, "Disconnect", 1));
    let err = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::DispatchFailure(_)), "{err:?}");
    let entry = &emulator.journal()[0];
    assert_eq!(entry.error_type.as_deref(), Some("Disconnect"));
    client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn the_journal_records_calls_in_order_with_their_bodies() {
    let emulator = emulator().await;
    let client = client(&emulator);
    client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
    update(&client, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    let journal = emulator.journal();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[0].operation, "DescribeUser");
    assert_eq!(journal[0].request_body, Value::Null);
    assert_eq!(journal[1].operation, "UpdateUserIdentityInfo");
    assert_eq!(journal[1].user_id.as_deref(), Some("u-jdoe"));
    assert_eq!(journal[1].status, 200);
    assert_eq!(journal[1].error_type, None);
    assert_eq!(
        journal[1].request_body,
        json!({"IdentityInfo": {"FirstName": "Jane", "LastName": "Doe"}})
    );
    assert!(journal[0].at <= journal[1].at);
    let waited = emulator
        .wait_for_calls(Operation::UpdateUserIdentityInfo, 1, Duration::from_secs(1))
        .await;
    assert_eq!(waited.len(), 1);
    emulator.clear_journal();
    assert!(emulator.journal().is_empty());
}

/// One HTTP/1.1 request over a fresh connection; returns status, headers and body.
async fn raw(
    emulator: &EmulatorHandle,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(emulator.addr())
        .await
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        emulator.addr(),
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test]
async fn requests_without_sigv4_authorization_are_refused() {
    let emulator = emulator().await;
    let path = format!("/users/{MANAGED}/u-jdoe");
    let (status, head, body) = raw(&emulator, "GET", &path, &[], "").await;
    assert_eq!(status, 403);
    assert!(
        head.contains("x-amzn-errortype: missingauthenticationtokenexception"),
        "{head}"
    );
    assert!(body.contains("Message"));
    let (status, _, _) = raw(
        &emulator,
        "GET",
        &path,
        &[("Authorization", "Bearer abc")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/connect/aws4_request, \
                 SignedHeaders=host, Signature=00";
    let (status, _, body) = raw(&emulator, "GET", &path, &[("Authorization", sigv4)], "").await;
    assert_eq!(status, 200, "{body}");
    let user: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(user["User"]["Username"], "jdoe");
    assert_eq!(emulator.journal()[0].status, 403);
}

#[tokio::test]
async fn the_control_api_scripts_the_emulator_over_http() {
    let emulator = Emulator::start("127.0.0.1:0").await.unwrap();
    let seed = json!({
        "instances": [{"id": "i-1", "identityManagementType": "SAML"}],
        "users": [{"instanceId": "i-1", "username": "gen",
                   "identityInfo": {"firstName": "Gen", "lastName": "Erated"}}]
    });
    let (status, _, body) = raw(&emulator, "POST", "/_emulator/seed", &[], &seed.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let seeded: Value = serde_json::from_str(&body).unwrap();
    let user_id = seeded["users"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(user_id.len(), 36);

    let (status, _, body) = raw(
        &emulator,
        "GET",
        &format!("/_emulator/users/i-1/{user_id}"),
        &[],
        "",
    )
    .await;
    assert_eq!(status, 200);
    let user: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(user["IdentityInfo"]["FirstName"], "Gen");

    let fault = json!({"operation": "UpdateUserIdentityInfo", "userId": user_id,
                       "errorType": "ThrottlingException", "count": 3});
    let (status, _, body) = raw(
        &emulator,
        "POST",
        "/_emulator/faults",
        &[],
        &fault.to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(emulator.faults()[0].count, 3);

    let quota = json!({"operation": "SearchUsers", "rps": 2.0, "burst": 2});
    let (status, _, _) = raw(
        &emulator,
        "POST",
        "/_emulator/quota",
        &[],
        &quota.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let quota = json!({"operation": "SearchUsers", "rps": null});
    let (status, _, _) = raw(
        &emulator,
        "POST",
        "/_emulator/quota",
        &[],
        &quota.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let latency = json!({"operation": "DescribeUser", "ms": 5});
    let (status, _, _) = raw(
        &emulator,
        "POST",
        "/_emulator/latency",
        &[],
        &latency.to_string(),
    )
    .await;
    assert_eq!(status, 200);

    let client = client(&emulator);
    client
        .describe_user()
        .instance_id("i-1")
        .user_id(&user_id)
        .send()
        .await
        .unwrap();
    let (status, _, body) = raw(&emulator, "GET", "/_emulator/journal", &[], "").await;
    assert_eq!(status, 200);
    let journal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(journal[0]["operation"], "DescribeUser");
    assert_eq!(journal[0]["instanceId"], "i-1");
    assert_eq!(journal[0]["userId"], user_id.as_str());
    assert_eq!(journal[0]["status"], 200);
    assert!(journal[0]["at"].as_u64().unwrap() > 0);
    let (status, _, _) = raw(&emulator, "DELETE", "/_emulator/journal", &[], "").await;
    assert_eq!(status, 200);
    assert!(emulator.journal().is_empty());

    let (status, _, body) = raw(&emulator, "POST", "/_emulator/faults", &[], "{").await;
    assert_eq!(status, 400, "{body}");

    let (status, _, _) = raw(&emulator, "POST", "/_emulator/reset", &[], "").await;
    assert_eq!(status, 200);
    assert!(emulator.instance("i-1").is_none());
    assert!(emulator.faults().is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn the_demo_contact_centre_seed_loads() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../demo/contact-centre.json"
    ))
    .unwrap();
    let seed: Seed = serde_json::from_str(&text).unwrap();
    let emulator = Emulator::builder()
        .seed(seed)
        .start("127.0.0.1:0")
        .await
        .unwrap();
    let protected = emulator.user(MANAGED, "u-protected").unwrap();
    assert!(
        protected
            .security_profile_ids
            .contains(&"sp-admin".to_owned())
    );
    assert_eq!(
        emulator.instance(SAML).unwrap().identity_management_type,
        IdentityManagementType::Saml
    );
    let client = client(&emulator);
    let out = client
        .list_users()
        .instance_id(MANAGED)
        .send()
        .await
        .unwrap();
    assert!(out.user_summary_list().len() >= 3);
    // reset restores the start-up seed.
    update(&client, MANAGED, "u-jdoe", identity("Janet", "Doe"))
        .await
        .unwrap();
    emulator.reset();
    assert_eq!(
        emulator
            .user(MANAGED, "u-jdoe")
            .unwrap()
            .identity_info
            .first_name
            .as_deref(),
        Some("Jane")
    );
}

#[tokio::test]
async fn the_binary_prints_its_address_serves_the_seed_and_stops_on_sigterm() {
    use tokio::io::AsyncBufReadExt;
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/contact-centre.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_connect-emulator"))
        .args(["--listen", "127.0.0.1:0", "--seed", seed, "--quiet"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    tokio::io::BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .expect(&line)
        .to_owned();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let client = Client::from_conf(
        aws_sdk_connect::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&url)
            .credentials_provider(Credentials::new(
                "AKIDEXAMPLE",
                "secret",
                None,
                None,
                "test",
            ))
            .build(),
    );
    let out = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-protected")
        .send()
        .await
        .unwrap();
    assert_eq!(out.user().unwrap().security_profile_ids(), ["sp-admin"]);

    let pid = child.id().unwrap().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("the emulator stops on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_journal_numbers_each_call_times_its_reply_and_names_its_signing_key() {
    let emulator = emulator().await;
    let first = client(&emulator);
    let second = Client::from_conf(
        config(&emulator)
            .credentials_provider(Credentials::new("AKIDSECOND", "secret", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    for c in [&first, &second, &first] {
        c.describe_user()
            .instance_id(MANAGED)
            .user_id("u-jdoe")
            .send()
            .await
            .unwrap();
    }
    let journal = emulator.journal();
    let callers: Vec<_> = journal.iter().map(|e| e.caller.as_deref()).collect();
    assert_eq!(
        callers,
        [Some("AKIDEXAMPLE"), Some("AKIDSECOND"), Some("AKIDEXAMPLE")]
    );
    assert!(
        journal.windows(2).all(|w| w[0].seq < w[1].seq),
        "{journal:?}"
    );
    for entry in &journal {
        let finished = entry.finished_at.expect("answered");
        assert!(finished >= entry.at, "{entry:?}");
    }
}

/// An instance holding `count` users `agent00000`, `agent00001`, …
async fn large_instance(count: usize) -> EmulatorHandle {
    let emulator = emulator().await;
    let users: Vec<Value> = (0..count)
        .map(|i| {
            json!({"instanceId": MANAGED, "id": format!("u-{i:05}"),
                        "username": format!("agent{i:05}")})
        })
        .collect();
    emulator.seed_json(json!({ "users": users })).unwrap();
    emulator
}

#[tokio::test]
async fn list_users_pages_hold_100_by_default_and_at_most_1000() {
    // 2 seeded by `emulator()` plus 2,500.
    let emulator = large_instance(2500).await;
    let client = client(&emulator);
    let default = client
        .list_users()
        .instance_id(MANAGED)
        .send()
        .await
        .unwrap();
    assert_eq!(default.user_summary_list().len(), 100);
    assert!(default.next_token().is_some());
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = client
            .list_users()
            .instance_id(MANAGED)
            .max_results(1000)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        sizes.push(page.user_summary_list().len());
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(sizes, [1000, 1000, 502]);
    for bad in [0, 1001] {
        let err = client
            .list_users()
            .instance_id(MANAGED)
            .max_results(bad)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.as_service_error().and_then(|e| e.code()),
            Some("InvalidParameterException"),
            "maxResults {bad}: {err:?}"
        );
    }
}

#[tokio::test]
async fn search_users_pages_hold_at_most_500() {
    let emulator = large_instance(600).await;
    let client = client(&emulator);
    let page = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(500)
        .send()
        .await
        .unwrap();
    assert_eq!(page.users().len(), 500);
    assert_eq!(page.approximate_total_count(), Some(602));
    let rest = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(500)
        .next_token(page.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.users().len(), 102);
    assert!(rest.next_token().is_none());
    let err = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(501)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(SearchUsersError::InvalidParameterException(_))
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_next_token_is_valid_only_for_the_listing_that_issued_it() {
    let emulator = large_instance(10).await;
    let client = client(&emulator);
    let listed = client
        .list_users()
        .instance_id(MANAGED)
        .max_results(3)
        .send()
        .await
        .unwrap();
    let list_token = listed.next_token().unwrap().to_owned();
    // The token of one listing does not page a search, nor a listing of another instance.
    let err = client
        .search_users()
        .instance_id(MANAGED)
        .max_results(3)
        .next_token(&list_token)
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(SearchUsersError::InvalidParameterException(_))
        ),
        "{err:?}"
    );
    for token in [list_token.as_str(), "3", "not-a-token"] {
        let instance = if token == list_token { SAML } else { MANAGED };
        let err = client
            .list_users()
            .instance_id(instance)
            .next_token(token)
            .send()
            .await
            .unwrap_err();
        assert_eq!(
            err.as_service_error().and_then(|e| e.code()),
            Some("InvalidParameterException"),
            "token {token:?}: {err:?}"
        );
    }
    // A search token is bound to its criteria.
    let criteria = |prefix: &str| {
        UserSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name("Username")
                    .value(prefix)
                    .comparison_type(StringComparisonType::StartsWith)
                    .build(),
            )
            .build()
    };
    let first = client
        .search_users()
        .instance_id(MANAGED)
        .search_criteria(criteria("agent"))
        .max_results(4)
        .send()
        .await
        .unwrap();
    let token = first.next_token().unwrap();
    let same = client
        .search_users()
        .instance_id(MANAGED)
        .search_criteria(criteria("agent"))
        .max_results(4)
        .next_token(token)
        .send()
        .await
        .unwrap();
    assert_eq!(same.users()[0].username(), Some("agent00004"));
    let other = client
        .search_users()
        .instance_id(MANAGED)
        .search_criteria(criteria("agent0000"))
        .next_token(token)
        .send()
        .await;
    assert!(other.is_err(), "{other:?}");
}

#[tokio::test]
async fn a_quota_throttles_list_users_and_search_users_page_by_page() {
    let emulator = large_instance(5).await;
    let client = client(&emulator);
    emulator.set_quota(Operation::ListUsers, 0.1, 2);
    emulator.set_quota(Operation::SearchUsers, 0.1, 1);
    let page = |token: Option<String>| {
        client
            .list_users()
            .instance_id(MANAGED)
            .max_results(3)
            .set_next_token(token)
            .send()
    };
    let first = page(None).await.unwrap();
    page(first.next_token().map(str::to_owned)).await.unwrap();
    let err = page(None).await.unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.code()),
        Some("ThrottlingException"),
        "{err:?}"
    );
    let search = || client.search_users().instance_id(MANAGED).send();
    search().await.unwrap();
    let err = search().await.unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(SearchUsersError::ThrottlingException(_))
        ),
        "{err:?}"
    );
    assert_eq!(emulator.calls(Operation::ListUsers).len(), 3);
}

#[tokio::test]
async fn a_deleted_users_username_can_be_given_to_a_new_user() {
    let emulator = emulator().await;
    let client = client(&emulator);
    client
        .delete_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();
    let err = client
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err.as_service_error(),
            Some(DescribeUserError::ResourceNotFoundException(_))
        ),
        "{err:?}"
    );
    let err = client
        .delete_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        err.as_service_error().and_then(|e| e.code()),
        Some("ResourceNotFoundException")
    );
    let created = client
        .create_user()
        .instance_id(MANAGED)
        .username("jdoe")
        .security_profile_ids("sp-agent")
        .routing_profile_id("rp")
        .phone_config(
            UserPhoneConfig::builder()
                .phone_type(PhoneType::SoftPhone)
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_ne!(created.user_id(), Some("u-jdoe"));
}

#[tokio::test]
async fn a_quota_is_one_bucket_for_every_caller_and_instance_and_stats_count_each_callers_throttles()
 {
    let emulator = emulator().await;
    let function = client(&emulator);
    let other = Client::from_conf(
        config(&emulator)
            .credentials_provider(Credentials::new("AKIDOTHER", "secret", None, None, "test"))
            .retry_config(RetryConfig::disabled())
            .build(),
    );
    // A bucket of 3 that refills once a minute: three calls pass, whoever makes them.
    emulator.set_quota(Operation::UpdateUserIdentityInfo, 1.0 / 60.0, 3);
    update(&function, MANAGED, "u-jdoe", identity("Jane", "Doe"))
        .await
        .unwrap();
    update(&other, MANAGED, "u-asmith", identity("Alex", "Smith"))
        .await
        .unwrap();
    update(&other, SAML, "u-saml", identity("Li", "Chen"))
        .await
        .unwrap();
    for (client, instance, user) in [
        (&function, MANAGED, "u-jdoe"),
        (&other, DIRECTORY, "u-dir"),
        (&function, SAML, "u-saml"),
    ] {
        let err = update(client, instance, user, identity("Li", "Chen"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, UpdateUserIdentityInfoError::ThrottlingException(_)),
            "{err:?}"
        );
    }
    function
        .describe_user()
        .instance_id(MANAGED)
        .user_id("u-jdoe")
        .send()
        .await
        .unwrap();

    let op = Operation::UpdateUserIdentityInfo;
    assert_eq!(
        emulator.counts(op, None),
        CallCounts {
            calls: 6,
            throttled: 3
        }
    );
    assert_eq!(
        emulator.counts(op, Some("AKIDEXAMPLE")),
        CallCounts {
            calls: 3,
            throttled: 2
        }
    );
    assert_eq!(
        emulator.counts(op, Some("AKIDOTHER")),
        CallCounts {
            calls: 3,
            throttled: 1
        }
    );
    assert_eq!(emulator.counts(Operation::DescribeUser, None).throttled, 0);

    let (status, _, body) = raw(&emulator, "GET", "/_emulator/stats", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        stats["UpdateUserIdentityInfo"]["total"],
        json!({"calls": 6, "throttled": 3})
    );
    assert_eq!(
        stats["UpdateUserIdentityInfo"]["callers"]["AKIDOTHER"],
        json!({"calls": 3, "throttled": 1})
    );
    assert_eq!(stats["DescribeUser"]["total"]["calls"], 1);
}
