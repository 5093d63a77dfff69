//! Errors as the service answers them: a status code and `{"error": {"message", "type"}}` (OpenAI's shape), so
//! that clients of OpenAI-style APIs show the message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// An image that cannot be decoded, a text over the limit with truncation off (422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("missing or wrong API key (send Authorization: Bearer KEY)")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("this route does not take that method (see docs/openapi.yaml)")]
    MethodNotAllowed,
    #[error("request body too large: {0}")]
    TooLarge(String),
    /// The queue is full: try again shortly (429 with Retry-After).
    #[error("the server is busy: {0} requests are waiting; retry after a second")]
    Busy(usize),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    /// Not ready yet (the model is loading) (503).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_request_error",
            Self::Unprocessable(_) => "invalid_input",
            Self::Unauthorized => "authentication_error",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooLarge(_) => "request_too_large",
            Self::Busy(_) => "overloaded",
            Self::Timeout(_) => "timeout",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "server_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"message": self.to_string(), "type": self.kind()}});
        let mut response = (self.status(), axum::Json(body)).into_response();
        if matches!(self, Self::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::Unauthorized) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A library error caused by the request's content (undecodable image, over-long text) is the client's.
impl From<clip::ClipError> for ApiError {
    fn from(error: clip::ClipError) -> Self {
        match error {
            clip::ClipError::Preprocess(_)
            | clip::ClipError::Tokenizer(_)
            | clip::ClipError::InvalidInput(_) => Self::Unprocessable(error.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}

impl From<clip_search::SearchError> for ApiError {
    fn from(error: clip_search::SearchError) -> Self {
        match error {
            clip_search::SearchError::Query(_) => Self::BadRequest(error.to_string()),
            clip_search::SearchError::Clip(e) => e.into(),
            other => Self::Internal(other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
