//! A fixed token table [`Authenticator`], for tests and demos.

use async_trait::async_trait;

use crate::Authenticator;
use crate::error::Result;
use crate::fast_hash::HashMap;
use crate::model::{AuthRejection, Credentials, Principal};

/// Accepts exactly the tokens it was given. Not for production: tokens never
/// expire. Use the `jwt` feature's authenticator there.
#[derive(Debug, Default, Clone)]
pub struct StaticAuthenticator {
    tokens: HashMap<String, Principal>,
}

impl StaticAuthenticator {
    /// An authenticator that knows no token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Accepts `token` as `principal`.
    #[must_use]
    pub fn with_token(mut self, token: impl Into<String>, principal: Principal) -> Self {
        self.tokens.insert(token.into(), principal);
        self
    }

    /// Accepts `token` as `principal` (in place).
    pub fn insert(&mut self, token: impl Into<String>, principal: Principal) {
        self.tokens.insert(token.into(), principal);
    }
}

#[async_trait]
impl Authenticator for StaticAuthenticator {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<std::result::Result<Principal, AuthRejection>> {
        let Some(token) = &credentials.bearer else {
            return Ok(Err(AuthRejection::Missing));
        };
        Ok(self
            .tokens
            .get(token)
            .cloned()
            .ok_or(AuthRejection::Unknown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::UserId;

    #[tokio::test]
    async fn accepts_known_tokens_only() {
        let alice = Principal::user(UserId::new("alice").unwrap());
        let auth = StaticAuthenticator::new().with_token("t-alice", alice.clone());
        let ok = auth.authenticate(&Credentials::bearer("t-alice")).await;
        assert_eq!(ok.unwrap(), Ok(alice));
        let unknown = auth.authenticate(&Credentials::bearer("t-bob")).await;
        assert_eq!(unknown.unwrap(), Err(AuthRejection::Unknown));
        let missing = auth.authenticate(&Credentials::none()).await;
        assert_eq!(missing.unwrap(), Err(AuthRejection::Missing));
    }

    #[test]
    fn debug_output_never_shows_the_token() {
        let printed = format!("{:?}", Credentials::bearer("s3cr3t"));
        assert!(!printed.contains("s3cr3t"), "{printed}");
    }
}
