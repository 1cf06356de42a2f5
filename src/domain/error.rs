//! Failure classes (SPEC §3): what went wrong, whether trying again can help, and which
//! dead-letter queue variable names the queue for it.

use std::fmt;

/// The class a failed record is dead-lettered under. Its name is the `ErrorClass`
/// message attribute and the `errorClass` in an EventBridge reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    MalformedEvent,
    ValidationError,
    PolicyViolation,
    InvalidRequestException,
    InvalidParameterException,
    ResourceNotFoundException,
    ThrottlingException,
    InternalServiceException,
    UnknownError,
}

impl ErrorClass {
    /// Every class, in the order of the SPEC's table.
    pub const ALL: [ErrorClass; 9] = [
        ErrorClass::MalformedEvent,
        ErrorClass::ValidationError,
        ErrorClass::PolicyViolation,
        ErrorClass::InvalidRequestException,
        ErrorClass::InvalidParameterException,
        ErrorClass::ResourceNotFoundException,
        ErrorClass::ThrottlingException,
        ErrorClass::InternalServiceException,
        ErrorClass::UnknownError,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::MalformedEvent => "MalformedEvent",
            ErrorClass::ValidationError => "ValidationError",
            ErrorClass::PolicyViolation => "PolicyViolation",
            ErrorClass::InvalidRequestException => "InvalidRequestException",
            ErrorClass::InvalidParameterException => "InvalidParameterException",
            ErrorClass::ResourceNotFoundException => "ResourceNotFoundException",
            ErrorClass::ThrottlingException => "ThrottlingException",
            ErrorClass::InternalServiceException => "InternalServiceException",
            ErrorClass::UnknownError => "UnknownError",
        }
    }

    /// Whether a later attempt may succeed where this one failed.
    pub const fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorClass::ThrottlingException
                | ErrorClass::InternalServiceException
                | ErrorClass::UnknownError
        )
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one record could not be applied: its class and a message that never holds
/// personal data (it becomes the `ErrorMessage` attribute and a log field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {message}")]
pub struct Failure {
    pub class: ErrorClass,
    pub message: String,
}

impl Failure {
    pub fn new(class: ErrorClass, message: impl Into<String>) -> Self {
        Failure {
            class,
            message: message.into(),
        }
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::MalformedEvent, message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::ValidationError, message)
    }

    pub fn policy(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::PolicyViolation, message)
    }

    pub fn unknown(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::UnknownError, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_throttling_internal_and_unknown_errors_are_retryable() {
        let retryable: Vec<_> = ErrorClass::ALL
            .into_iter()
            .filter(|c| c.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            vec![
                ErrorClass::ThrottlingException,
                ErrorClass::InternalServiceException,
                ErrorClass::UnknownError
            ]
        );
    }

    #[test]
    fn a_class_prints_as_its_attribute_value() {
        assert_eq!(
            ErrorClass::ResourceNotFoundException.to_string(),
            "ResourceNotFoundException"
        );
        assert_eq!(ErrorClass::MalformedEvent.as_str(), "MalformedEvent");
    }
}
