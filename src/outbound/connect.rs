//! Amazon Connect behind the `Directory` port: the SDK calls, their errors mapped to
//! failure classes variant by variant, and the container-lifetime caches.

use aws_sdk_connect::Client;
use aws_sdk_connect::error::SdkError;
use aws_sdk_connect::operation::describe_instance::DescribeInstanceError;
use aws_sdk_connect::operation::describe_user::DescribeUserError;
use aws_sdk_connect::operation::list_users::{ListUsersError, ListUsersOutput};
use aws_sdk_connect::operation::search_users::SearchUsersError;
use aws_sdk_connect::operation::update_user_identity_info::UpdateUserIdentityInfoError;
use aws_sdk_connect::types::{
    StringComparisonType, StringCondition, UserIdentityInfo, UserSearchCriteria,
};
use aws_smithy_runtime_api::client::result::DispatchFailure;

use crate::domain::change::IdentityInfo;
use crate::domain::error::ErrorClass;
use crate::domain::identity::{InstanceId, UserId};
use crate::domain::instance::{IdentityManagement, UpdatePlan};
use crate::domain::ports::{CallFailure, Directory, LIST_PAGE_SIZE, Reach, UserPage, UserRecord};

/// Runs one SDK call, one attempt (the client's retries are off: the pipeline retries,
/// so that every attempt takes a limiter token and meets the deadline), and classifies
/// its error.
///
/// The SDK's `send()` future is several kilobytes; it is boxed here, once, so that the
/// futures that await a call (the pipeline's deadline and limiter timeouts, the panic
/// guard around a user's changes, the users in flight) hold a pointer to it instead of
/// copying it each time one is built or moved: those copies were about a quarter of the
/// instructions spent per record.
fn call<T, E, R>(
    operation: &'static str,
    send: impl Future<Output = Result<T, SdkError<E, R>>>,
    classify: fn(&E) -> ErrorClass,
) -> impl Future<Output = Result<T, CallFailure>> {
    let send = Box::pin(send);
    async move {
        send.await
            .map_err(|e| classify_sdk_error(operation, &e, classify))
    }
}

/// Maps an SDK error to its class without ever turning it into a string first; the
/// message names the operation and the class, never what the service echoed back
/// (which may hold the values sent). Also says whether Connect may have acted: a
/// refused connection or a request never built did not leave; a timeout, a connection
/// broken after sending, or an unreadable reply leave the outcome unknown.
fn classify_sdk_error<E, R>(
    operation: &'static str,
    err: &SdkError<E, R>,
    classify: fn(&E) -> ErrorClass,
) -> CallFailure {
    let (class, what, reach) = match err {
        SdkError::ServiceError(service) => {
            let class = classify(service.err());
            (class, class.as_str(), Reach::Answered)
        }
        SdkError::TimeoutError(_) => (ErrorClass::UnknownError, "a timeout", Reach::Unknown),
        SdkError::DispatchFailure(failure) if never_sent(failure) => (
            ErrorClass::UnknownError,
            "a refused connection",
            Reach::NotSent,
        ),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            (ErrorClass::UnknownError, "a timeout", Reach::Unknown)
        }
        SdkError::DispatchFailure(_) => (
            ErrorClass::UnknownError,
            "a connection failure",
            Reach::Unknown,
        ),
        SdkError::ResponseError(_) => (
            ErrorClass::UnknownError,
            "an unreadable response",
            Reach::Unknown,
        ),
        SdkError::ConstructionFailure(_) => (
            ErrorClass::UnknownError,
            "a request that could not be built",
            Reach::NotSent,
        ),
        // `SdkError` is non-exhaustive: a kind added later is not one we know.
        _ => (
            ErrorClass::UnknownError,
            "an unknown SDK error",
            Reach::Unknown,
        ),
    };
    let message = if class == ErrorClass::UnknownError && matches!(err, SdkError::ServiceError(_)) {
        format!("Connect {operation} failed with an error this function does not model")
    } else {
        format!("Connect {operation} failed with {what}")
    };
    CallFailure::new(class, message).with_reach(reach)
}

/// Whether a dispatch failed before the request could leave: the connection was
/// refused (or its address did not resolve), or the request was unusable.
fn never_sent(failure: &DispatchFailure) -> bool {
    if failure.is_user() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> =
        failure.as_connector_error().map(|e| e as _);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::AddrNotAvailable
            )
        {
            return true;
        }
        source = e.source();
    }
    false
}

fn describe_instance_class(e: &DescribeInstanceError) -> ErrorClass {
    match e {
        DescribeInstanceError::InvalidRequestException(_) => ErrorClass::InvalidRequestException,
        DescribeInstanceError::ResourceNotFoundException(_) => {
            ErrorClass::ResourceNotFoundException
        }
        DescribeInstanceError::InternalServiceException(_) => ErrorClass::InternalServiceException,
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => unmodelled(e.meta().code()),
    }
}

fn describe_user_class(e: &DescribeUserError) -> ErrorClass {
    match e {
        DescribeUserError::InvalidRequestException(_) => ErrorClass::InvalidRequestException,
        DescribeUserError::InvalidParameterException(_) => ErrorClass::InvalidParameterException,
        DescribeUserError::ResourceNotFoundException(_) => ErrorClass::ResourceNotFoundException,
        DescribeUserError::ThrottlingException(_) => ErrorClass::ThrottlingException,
        DescribeUserError::InternalServiceException(_) => ErrorClass::InternalServiceException,
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => unmodelled(e.meta().code()),
    }
}

fn search_users_class(e: &SearchUsersError) -> ErrorClass {
    match e {
        SearchUsersError::InvalidRequestException(_) => ErrorClass::InvalidRequestException,
        SearchUsersError::InvalidParameterException(_) => ErrorClass::InvalidParameterException,
        SearchUsersError::ResourceNotFoundException(_) => ErrorClass::ResourceNotFoundException,
        SearchUsersError::ThrottlingException(_) => ErrorClass::ThrottlingException,
        SearchUsersError::InternalServiceException(_) => ErrorClass::InternalServiceException,
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => unmodelled(e.meta().code()),
    }
}

fn update_class(e: &UpdateUserIdentityInfoError) -> ErrorClass {
    match e {
        UpdateUserIdentityInfoError::InvalidRequestException(_) => {
            ErrorClass::InvalidRequestException
        }
        UpdateUserIdentityInfoError::InvalidParameterException(_) => {
            ErrorClass::InvalidParameterException
        }
        UpdateUserIdentityInfoError::ResourceNotFoundException(_) => {
            ErrorClass::ResourceNotFoundException
        }
        UpdateUserIdentityInfoError::ThrottlingException(_) => ErrorClass::ThrottlingException,
        UpdateUserIdentityInfoError::InternalServiceException(_) => {
            ErrorClass::InternalServiceException
        }
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => unmodelled(e.meta().code()),
    }
}

/// An error an operation does not model. A rate throttle that reaches us unmodelled
/// (DescribeInstance models none) is still a throttle; anything else, including
/// `LimitExceededException` (a resource quota, which no retry lifts), is `UnknownError`.
fn unmodelled(code: Option<&str>) -> ErrorClass {
    match code {
        Some("ThrottlingException" | "TooManyRequestsException") => ErrorClass::ThrottlingException,
        _ => ErrorClass::UnknownError,
    }
}

/// The Connect directory over the SDK: one request per call, no state between calls (the
/// pipeline keeps what it learns: instances, username resolutions).
pub struct ConnectDirectory {
    client: Client,
}

impl ConnectDirectory {
    pub fn new(client: Client) -> Self {
        ConnectDirectory { client }
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Directory for ConnectDirectory {
    async fn identity_management(
        &self,
        instance: &InstanceId,
    ) -> Result<IdentityManagement, CallFailure> {
        let out = call(
            "DescribeInstance",
            self.client
                .describe_instance()
                .instance_id(instance.as_str())
                .send(),
            describe_instance_class,
        )
        .await?;
        // Without its identity-management type the instance's rules cannot be known:
        // fail safe rather than apply none of them.
        out.instance()
            .and_then(|i| i.identity_management_type())
            .map(|t| IdentityManagement::from_wire(t.as_str()))
            .ok_or_else(|| {
                CallFailure::new(
                    ErrorClass::UnknownError,
                    "Connect DescribeInstance returned no IdentityManagementType",
                )
            })
    }

    async fn find_user(
        &self,
        instance: &InstanceId,
        username: &str,
    ) -> Result<UserId, CallFailure> {
        let criteria = UserSearchCriteria::builder()
            .string_condition(
                StringCondition::builder()
                    .field_name("Username")
                    .value(username)
                    .comparison_type(StringComparisonType::Exact)
                    .build(),
            )
            .build();
        let out = call(
            "SearchUsers",
            self.client
                .search_users()
                .instance_id(instance.as_str())
                .search_criteria(criteria)
                .max_results(10)
                .send(),
            search_users_class,
        )
        .await?;
        // Only the exact Username: a near match is another account, and changing the
        // wrong account's Email is the takeover this function must not enable.
        out.users()
            .iter()
            .find(|u| u.username() == Some(username))
            .and_then(|u| u.id())
            .and_then(|id| UserId::parse(id).ok())
            .ok_or_else(|| {
                CallFailure::new(
                    ErrorClass::ResourceNotFoundException,
                    "Connect SearchUsers found no user with that Username",
                )
            })
    }

    async fn list_users_page(
        &self,
        instance: &InstanceId,
        next_token: Option<&str>,
    ) -> Result<UserPage, CallFailure> {
        call(
            "ListUsers",
            self.client
                .list_users()
                .instance_id(instance.as_str())
                .max_results(LIST_PAGE_SIZE as i32)
                .set_next_token(next_token.map(str::to_owned))
                .send(),
            list_users_class,
        )
        .await
        .map(page_of)
    }

    async fn describe_user(
        &self,
        instance: &InstanceId,
        user: &UserId,
    ) -> Result<UserRecord, CallFailure> {
        let out = call(
            "DescribeUser",
            self.client
                .describe_user()
                .instance_id(instance.as_str())
                .user_id(user.as_str())
                .send(),
            describe_user_class,
        )
        .await?;
        let Some(found) = out.user() else {
            return Err(CallFailure::new(
                ErrorClass::UnknownError,
                "Connect DescribeUser returned no user",
            ));
        };
        // Without IdentityInfo the current identity is not known, and an empty one
        // merged and sent whole (the update is a full replace) would clear every field.
        let Some(info) = found.identity_info() else {
            return Err(CallFailure::new(
                ErrorClass::UnknownError,
                "Connect DescribeUser returned a user without IdentityInfo",
            ));
        };
        Ok(UserRecord {
            info: IdentityInfo {
                first_name: non_empty(info.first_name()),
                last_name: non_empty(info.last_name()),
                email: non_empty(info.email()),
                secondary_email: non_empty(info.secondary_email()),
                mobile: non_empty(info.mobile()),
            },
            security_profile_ids: found.security_profile_ids().to_vec(),
            username: found.username().map(str::to_owned),
        })
    }

    async fn update_identity(
        &self,
        instance: &InstanceId,
        user: &UserId,
        plan: &UpdatePlan,
    ) -> Result<(), CallFailure> {
        let info = &plan.info;
        let identity = UserIdentityInfo::builder()
            .set_first_name(info.first_name.clone())
            .set_last_name(info.last_name.clone())
            .set_email(if plan.send_email {
                info.email.clone()
            } else {
                None
            })
            .set_secondary_email(info.secondary_email.clone())
            .set_mobile(info.mobile.clone())
            .build();
        call(
            "UpdateUserIdentityInfo",
            self.client
                .update_user_identity_info()
                .instance_id(instance.as_str())
                .user_id(user.as_str())
                .identity_info(identity)
                .send(),
            update_class,
        )
        .await?;
        Ok(())
    }
}

/// The (username, id) pairs of a page; summaries without either are skipped.
fn page_of(out: ListUsersOutput) -> UserPage {
    let next_token = out.next_token().map(str::to_owned);
    let users = out
        .user_summary_list
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| Some((u.username?, u.id?)))
        .collect();
    UserPage { users, next_token }
}

fn list_users_class(e: &ListUsersError) -> ErrorClass {
    match e {
        ListUsersError::InvalidRequestException(_) => ErrorClass::InvalidRequestException,
        ListUsersError::InvalidParameterException(_) => ErrorClass::InvalidParameterException,
        ListUsersError::ResourceNotFoundException(_) => ErrorClass::ResourceNotFoundException,
        ListUsersError::ThrottlingException(_) => ErrorClass::ThrottlingException,
        ListUsersError::InternalServiceException(_) => ErrorClass::InternalServiceException,
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => unmodelled(e.meta().code()),
    }
}
