//! The axum middleware in front of every HTTP handler, and the [`Caller`] extractor.
//!
//! Invariant: a handler that extracts [`Caller`] runs only after [`Auth::admit`] accepted the
//! request for its route; the extractor never falls back to a request field.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::permissions::http_access;
use super::{Auth, AuthError, Caller, Edge, Unauthenticated};
use crate::http::error::ApiError;

/// Route-level middleware (`Router::route_layer`, so the matched route template is known).
pub async fn require(
    State(auth): State<Arc<Auth>>,
    route: Option<MatchedPath>,
    mut request: Request,
    next: Next,
) -> Response {
    let route = route.as_ref().map(MatchedPath::as_str).unwrap_or_default();
    let access = http_access(request.method().as_str(), route);
    let endpoint = format!("{} {route}", request.method());
    match auth.admit(&endpoint, access, Edge::Client, &mut request) {
        Ok(()) => next.run(request).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::from(AuthError::Unauthenticated(
                Unauthenticated::Missing,
            )))
    }
}
