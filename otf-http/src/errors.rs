//! One mapping from failures to an HTTP status and a JSON:API error document.

use hyper::StatusCode;
use otf_core::pool::PoolError;
use otf_core::store::StoreError;
use otf_core::Error;

/// A failed request: status, a short title and a detail for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub title: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        let title = status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase();
        Self {
            status,
            title,
            detail: detail.into(),
        }
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// The JSON:API error document; `status` is a string, as go-tfe needs.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({
            "errors": [{
                "status": self.status.as_u16().to_string(),
                "title": self.title,
                "detail": self.detail,
            }]
        })
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::NotFound { .. } | Error::InvalidId(_) => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::AlreadyExists { .. }
            | Error::Invalid { .. }
            | Error::InvalidName(_)
            | Error::AgentToken(_)
            | Error::LocalExecution { .. }
            | Error::ConfigNotReady { .. }
            | Error::Tarball(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Pool(PoolError::StillAssigned { .. }) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Pool(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Transition(_)
            | Error::Lock(_)
            | Error::AgentGone { .. }
            | Error::WorkspaceBusy { .. }
            | Error::StateConflict { .. }
            | Error::LateState(_) => StatusCode::CONFLICT,
            Error::AgentStillLive { .. } => StatusCode::PRECONDITION_FAILED,
            Error::IncompatibleAgent(_) => StatusCode::UPGRADE_REQUIRED,
            Error::Store(StoreError::Conflict(_)) => StatusCode::CONFLICT,
            Error::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            Error::Store(StoreError::Unavailable(_)) | Error::Deposed { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        let mut err = ApiError::new(status, e.to_string());
        // go-tfe prints the title; make lock conflicts read as such.
        if let Error::Lock(_) = e {
            err.title = "workspace lock conflict".into();
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = %e, "store unavailable");
        }
        err
    }
}

/// An id or name from a request that does not parse: the same answer as
/// the core gives for one (adapters parse at their edge).
impl From<otf_core::ids::InvalidId> for ApiError {
    fn from(e: otf_core::ids::InvalidId) -> Self {
        Error::from(e).into()
    }
}

impl From<otf_core::ids::InvalidName> for ApiError {
    fn from(e: otf_core::ids::InvalidName) -> Self {
        Error::from(e).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_carry_the_status_as_a_string() {
        let e = ApiError::from(Error::NotFound {
            kind: "workspace",
            id: "ws-x".into(),
        });
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(
            e.document(),
            serde_json::json!({"errors":[{"status":"404","title":"not found","detail":"workspace ws-x not found"}]})
        );
    }
}
