//! Connect's error replies. The SDK reads the error name from the `x-amzn-ErrorType` header
//! and the message from the body's `Message`, so both are produced exactly that way.

use std::fmt;

/// An error reply: HTTP status, `x-amzn-ErrorType` name and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl ApiError {
    /// An error by name, with the status Connect uses for it (400 for names it does not model).
    pub fn named(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        let error_type = error_type.into();
        ApiError {
            status: status_for(&error_type),
            error_type,
            message: message.into(),
        }
    }

    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::named("InvalidParameterException", message)
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::named("InvalidRequestException", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::named("ResourceNotFoundException", message)
    }

    pub fn throttled() -> Self {
        Self::named("ThrottlingException", "Rate exceeded")
    }

    pub fn duplicate(message: impl Into<String>) -> Self {
        Self::named("DuplicateResourceException", message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.error_type, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

/// The HTTP status Connect answers each of its error names with.
pub fn status_for(error_type: &str) -> u16 {
    match error_type {
        "InvalidRequestException" | "InvalidParameterException" => 400,
        "ResourceNotFoundException" | "UserNotFoundException" | "UnknownOperationException" => 404,
        "ThrottlingException"
        | "TooManyRequestsException"
        | "LimitExceededException"
        | "ServiceQuotaExceededException" => 429,
        "InternalServiceException" | "InternalFailure" => 500,
        "ServiceUnavailableException" => 503,
        "DuplicateResourceException" | "ResourceConflictException" | "ConflictException" => 409,
        "AccessDeniedException"
        | "MissingAuthenticationTokenException"
        | "UnrecognizedClientException"
        | "IncompleteSignatureException"
        | "InvalidSignatureException" => 403,
        _ => 400,
    }
}
