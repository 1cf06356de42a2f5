//! `ListUsers` for the username index: one page of the largest size per call, its errors
//! classified like the other Connect calls, its summaries reduced to (username, id).

use aws_sdk_connect::Client;
use aws_sdk_connect::error::SdkError;
use aws_sdk_connect::operation::list_users::{ListUsersError, ListUsersOutput};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use crate::domain::directory_index::LIST_PAGE_SIZE;
use crate::domain::error::ErrorClass;
use crate::domain::identity::InstanceId;
use crate::domain::ports::UserPage;

/// Sends one `ListUsers` request for `LIST_PAGE_SIZE` users after `next_token`.
pub(super) async fn list_users_page(
    client: &Client,
    instance: &InstanceId,
    next_token: Option<&str>,
) -> Result<ListUsersOutput, SdkError<ListUsersError, HttpResponse>> {
    client
        .list_users()
        .instance_id(instance.as_str())
        .max_results(LIST_PAGE_SIZE as i32)
        .set_next_token(next_token.map(str::to_owned))
        .send()
        .await
}

/// The (username, id) pairs of a page; summaries without either are skipped.
pub(super) fn page_of(out: ListUsersOutput) -> UserPage {
    let next_token = out.next_token().map(str::to_owned);
    let users = out
        .user_summary_list
        .unwrap_or_default()
        .into_iter()
        .filter_map(|u| Some((u.username?, u.id?)))
        .collect();
    UserPage { users, next_token }
}

pub(super) fn list_users_class(e: &ListUsersError) -> ErrorClass {
    match e {
        ListUsersError::InvalidRequestException(_) => ErrorClass::InvalidRequestException,
        ListUsersError::InvalidParameterException(_) => ErrorClass::InvalidParameterException,
        ListUsersError::ResourceNotFoundException(_) => ErrorClass::ResourceNotFoundException,
        ListUsersError::ThrottlingException(_) => ErrorClass::ThrottlingException,
        ListUsersError::InternalServiceException(_) => ErrorClass::InternalServiceException,
        // `Unhandled` and variants added in later SDK versions: not modelled here.
        _ => super::connect::unmodelled(e.meta().code()),
    }
}
