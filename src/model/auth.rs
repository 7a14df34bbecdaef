//! Who is asking: credentials in, a principal or a typed rejection out.

use std::fmt;

use super::UserId;

/// What a request presented to prove who it comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// The bearer token from `Authorization: Bearer <token>`, if any.
    pub bearer: Option<String>,
}

impl Credentials {
    /// Credentials carrying `token` as a bearer token.
    pub fn bearer(token: impl Into<String>) -> Self {
        Self {
            bearer: Some(token.into()),
        }
    }

    /// No credentials at all.
    pub fn none() -> Self {
        Self::default()
    }
}

impl fmt::Debug for Credentials {
    // Never print a token: it is a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("bearer", &self.bearer.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The buyer (JWT `sub`).
    pub user: UserId,
    /// Roles granted (JWT `roles`); [`Principal::ADMIN`] opens admin routes.
    pub roles: Vec<String>,
}

impl Principal {
    /// The role that opens admin routes.
    pub const ADMIN: &'static str = "admin";

    /// A principal with no roles.
    pub fn user(user: UserId) -> Self {
        Self {
            user,
            roles: Vec::new(),
        }
    }

    /// Whether the principal has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Whether the principal has the `admin` role.
    pub fn is_admin(&self) -> bool {
        self.has_role(Self::ADMIN)
    }
}

/// Why credentials were refused. Logged for operators; clients only ever
/// see `401 unauthenticated`, so a forger learns nothing from it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthRejection {
    /// No credentials were presented.
    #[error("no bearer token was presented")]
    Missing,
    /// The token is larger than the accepted maximum.
    #[error("the token is too large")]
    TooLarge,
    /// The token could not be parsed.
    #[error("the token is malformed")]
    Malformed,
    /// The token's header names an algorithm that is not allowed.
    #[error("the token's algorithm is not allowed")]
    DisallowedAlgorithm,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    BadSignature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is absent or ill-formed.
    #[error("the token's `{0}` claim is missing or invalid")]
    BadClaim(&'static str),
    /// `iss` is not the configured issuer.
    #[error("the token's issuer is not accepted")]
    WrongIssuer,
    /// `aud` does not include the configured audience.
    #[error("the token's audience is not accepted")]
    WrongAudience,
    /// The token is not known (static authenticators).
    #[error("the token is not known")]
    Unknown,
}
