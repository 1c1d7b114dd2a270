//! Credentials the SDK sends with every call: a bearer token as `authorization` metadata.
//!
//! Invariant: a token is checked once, when it is set (it must be a valid header value), and is
//! never printed: `Debug` shows only that one is present.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::error::ClientError;

/// A bearer token, ready to send.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(MetadataValue<Ascii>);

impl BearerToken {
    /// `token` as issued by `arbiter auth token` (or read from `operator.token`); surrounding
    /// whitespace, such as a file's trailing newline, is dropped.
    pub fn new(token: &str) -> Result<BearerToken, ClientError> {
        let token = token.trim();
        let invalid = || ClientError::InvalidRequest {
            reason: "the bearer token is empty or not printable ASCII".into(),
        };
        if token.is_empty() {
            return Err(invalid());
        }
        MetadataValue::try_from(format!("Bearer {token}"))
            .map(BearerToken)
            .map_err(|_| invalid())
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

/// Adds the token (if any) to every request on a channel.
#[derive(Clone, Debug, Default)]
pub struct Authorization(pub Option<BearerToken>);

impl Interceptor for Authorization {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(BearerToken(value)) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A channel that sends the credentials: what every generated client of the SDK runs on, and
/// what tools holding a raw generated client can use too.
pub type AuthChannel = InterceptedService<Channel, Authorization>;

/// `channel` with `token` attached to every call.
pub fn authorized(channel: Channel, token: Option<BearerToken>) -> AuthChannel {
    InterceptedService::new(channel, Authorization(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_sent_as_bearer_metadata_and_never_printed() {
        let token = BearerToken::new("arb_secret\n").expect("valid");
        assert!(!format!("{token:?}").contains("secret"));
        let request = Authorization(Some(token))
            .call(Request::new(()))
            .expect("interceptor never refuses");
        assert_eq!(
            request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
            Some("Bearer arb_secret")
        );
        let bare = Authorization(None)
            .call(Request::new(()))
            .expect("no token");
        assert!(bare.metadata().get("authorization").is_none());
    }

    #[test]
    fn empty_or_non_ascii_tokens_are_refused() {
        assert!(BearerToken::new("  ").is_err());
        assert!(BearerToken::new("tök\u{0}en").is_err());
    }
}
