//! What can go wrong in a sync stage, said in the sync's own terms. `crate::http::error` maps
//! each variant to a status; nothing here knows about HTTP.

use crate::policy::PolicyRejected;
use dasher_store::StoreError;

/// A sync stage that could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A request field is invalid; the same request will never succeed.
    #[error("{message}")]
    Invalid {
        /// The offending field, e.g. `hostname` or `primary_user_groups[3]`.
        field: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// The request carries more than the server accepts at once.
    #[error("{0}")]
    TooLarge(String),
    /// Storage failed; the client should retry later.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A policy plugin configured to reject on failure failed; the client keeps its state
    /// and retries at its next sync.
    #[error(transparent)]
    PolicyRejected(#[from] PolicyRejected),
}

impl From<super::inventory::FieldTooLong> for SyncError {
    fn from(e: super::inventory::FieldTooLong) -> Self {
        SyncError::Invalid { message: e.to_string(), field: e.field }
    }
}

impl SyncError {
    /// An invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        SyncError::Invalid { field: field.into(), message: message.into() }
    }
}
