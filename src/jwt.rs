//! JWT bearer-token authentication (feature `jwt`).
//!
//! [`JwtAuthenticator`] implements [`Authenticator`] on
//! [`jsonwebtoken`](https://docs.rs/jsonwebtoken) with its pure-Rust
//! (RustCrypto) backend. It accepts compact JWS tokens signed with exactly
//! one algorithm, fixed when it is built:
//!
//! | constructor | algorithm | key |
//! |---|---|---|
//! | [`JwtAuthenticator::hs256`] | `HS256` | a shared secret (at least 32 random bytes in production) |
//! | [`JwtAuthenticator::rs256_pem`] | `RS256` | an RSA public key, PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`) |
//! | [`JwtAuthenticator::es256_pem`] | `ES256` | a P-256 public key, PEM (`PUBLIC KEY`) |
//! | [`JwtAuthenticator::eddsa_pem`] | `EdDSA` | an Ed25519 public key, PEM (`PUBLIC KEY`) |
//!
//! # What is checked, in order
//!
//! 1. The token is at most [`MAX_TOKEN_BYTES`] long, before anything is
//!    parsed ([`AuthRejection::TooLarge`]).
//! 2. It has the compact shape `header.payload.signature` and its header is
//!    a base64url JSON object with a string `alg` and no `crit`
//!    ([`AuthRejection::Malformed`]).
//! 3. `alg` is exactly the authenticator's algorithm, compared as a string
//!    before any key is touched: `none`, another family (the HS256/RS256
//!    confusion attack) or another size of the same family are all
//!    [`AuthRejection::DisallowedAlgorithm`].
//! 4. The signature verifies ([`AuthRejection::BadSignature`]).
//! 5. `exp` is present and numeric ([`AuthRejection::BadClaim`]`("exp")`)
//!    and, with the leeway, not passed ([`AuthRejection::Expired`]); `nbf`,
//!    if present, is numeric and, with the leeway, reached
//!    ([`AuthRejection::NotYetValid`]). "Now" comes from the injectable
//!    [`Clock`], never from the system directly.
//! 6. `iss`, when an issuer is configured, equals it
//!    ([`AuthRejection::WrongIssuer`]).
//! 7. `aud`, when an audience is configured, is it or contains it; when no
//!    audience is configured, a token that names one is refused (RFC 7519
//!    §4.1.3: a token meant for another service is not for us)
//!    ([`AuthRejection::WrongAudience`]).
//! 8. `sub` is a valid [`UserId`] ([`AuthRejection::BadClaim`]`("sub")`)
//!    and `roles`, if present, is an array of strings
//!    ([`AuthRejection::BadClaim`]`("roles")`).
//!
//! Every rejection is logged at `debug` level with its reason; the token
//! itself is never logged. Clients only ever learn "401".
//!
//! ```
//! use std::time::Duration;
//! use flashsale::jwt::{Claims, JwtAuthenticator, sign_hs256};
//! use flashsale::{Clock, Credentials, SystemClock, UserId};
//! use flashsale::Authenticator;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), flashsale::Error> {
//! let secret = b"a-secret-of-at-least-32-random-bytes!!";
//! let auth = JwtAuthenticator::hs256(secret).with_issuer("shop");
//!
//! let alice = UserId::new("alice")?;
//! let claims = Claims::new(&alice, SystemClock.now(), Duration::from_secs(600))
//!     .with_issuer("shop")
//!     .with_roles(["admin"]);
//! let token = sign_hs256(secret, &claims)?;
//!
//! let principal = auth.authenticate(&Credentials::bearer(token)).await?.unwrap();
//! assert_eq!(principal.user, alice);
//! assert!(principal.is_admin());
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::model::{AuthRejection, Credentials, Principal, Timestamp, UserId};

/// The longest token accepted, in bytes (8 KiB). Longer tokens are refused
/// with [`AuthRejection::TooLarge`] before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The shortest HS256 secret accepted without a warning: 32 bytes, the
/// size of the SHA-256 output (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The default clock-skew allowance for `exp` and `nbf`: 30 seconds.
///
/// Small enough that an expired token dies quickly, large enough to absorb
/// the clock drift between a token issuer and this service.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// The HS256 secret the example servers and the load test fall back to when
/// `FLASHSALE_JWT_SECRET` is unset.
///
/// **Development only.** It is public, in this source file: anyone can mint
/// tokens with it, including admin tokens. A production service must set its
/// own secret (at least 32 random bytes) or use an asymmetric algorithm.
pub const DEV_SECRET: &[u8] = b"flashsale-dev-secret-DO-NOT-USE-IN-PRODUCTION";

/// The one signing algorithm an authenticator accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Hs256,
    Rs256,
    Es256,
    EdDsa,
}

impl Alg {
    /// The `alg` header value, exactly as RFC 7518 spells it.
    fn name(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
            Alg::EdDsa => "EdDSA",
        }
    }

    fn jwt(self) -> Algorithm {
        match self {
            Alg::Hs256 => Algorithm::HS256,
            Alg::Rs256 => Algorithm::RS256,
            Alg::Es256 => Algorithm::ES256,
            Alg::EdDsa => Algorithm::EdDSA,
        }
    }
}

/// Verifies JWT bearer tokens; see the [module docs](self) for every check.
///
/// Built with one of [`hs256`](Self::hs256), [`rs256_pem`](Self::rs256_pem),
/// [`es256_pem`](Self::es256_pem) or [`eddsa_pem`](Self::eddsa_pem), then
/// configured with the `with_*` methods. Cheap to share behind an `Arc`.
#[derive(Clone)]
pub struct JwtAuthenticator {
    alg: Alg,
    key: DecodingKey,
    /// HS256 only: HMAC-SHA256 keyed once, cloned per token (keying it
    /// costs two SHA-256 blocks and was a quarter of a verification).
    hs256: Option<Hmac<sha2::Sha256>>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: Duration,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtAuthenticator {
    // Never print the key: for HS256 it is the shared secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field("algorithm", &self.alg.name())
            .field("key", &"<redacted>")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("leeway", &self.leeway)
            .field("clock", &self.clock)
            .finish()
    }
}

impl JwtAuthenticator {
    /// Accepts only `HS256` tokens signed with `secret`.
    ///
    /// Use a secret of at least 32 random bytes; anyone who knows it can
    /// mint any token. [`DEV_SECRET`] is for development only. A shorter
    /// secret is accepted but logged as a warning: it can be brute-forced
    /// from a single token.
    pub fn hs256(secret: &[u8]) -> Self {
        if secret.len() < MIN_HS256_SECRET_BYTES {
            tracing::warn!(
                bytes = secret.len(),
                "the HS256 secret is shorter than {MIN_HS256_SECRET_BYTES} bytes; use a long random one"
            );
        }
        let mut this = Self::new(Alg::Hs256, DecodingKey::from_secret(secret));
        this.hs256 = Some(
            Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"),
        );
        this
    }

    /// Accepts only `RS256` tokens, verified with the RSA public key in
    /// `pem` (`-----BEGIN PUBLIC KEY-----` or `-----BEGIN RSA PUBLIC KEY-----`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `pem` is not a usable RSA public key.
    pub fn rs256_pem(pem: &[u8]) -> Result<Self> {
        let key = DecodingKey::from_rsa_pem(pem).map_err(|e| key_error("RS256", &e))?;
        Self::checked(Alg::Rs256, key)
    }

    /// Accepts only `ES256` tokens, verified with the P-256 public key in
    /// `pem` (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `pem` is not a P-256 public key.
    pub fn es256_pem(pem: &[u8]) -> Result<Self> {
        let key = DecodingKey::from_ec_pem(pem).map_err(|e| key_error("ES256", &e))?;
        Self::checked(Alg::Es256, key)
    }

    /// Accepts only `EdDSA` tokens, verified with the Ed25519 public key in
    /// `pem` (`-----BEGIN PUBLIC KEY-----`).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] if `pem` is not an Ed25519 public key.
    pub fn eddsa_pem(pem: &[u8]) -> Result<Self> {
        let key = DecodingKey::from_ed_pem(pem).map_err(|e| key_error("EdDSA", &e))?;
        Self::checked(Alg::EdDsa, key)
    }

    /// Requires `iss` to equal `issuer`.
    #[must_use]
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.issuer = Some(issuer.to_owned());
        self
    }

    /// Requires `aud` to be, or to contain, `audience`.
    ///
    /// Without this, tokens that carry any `aud` are refused.
    #[must_use]
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.audience = Some(audience.to_owned());
        self
    }

    /// Sets the clock-skew allowance applied to `exp` and `nbf`
    /// (default [`DEFAULT_LEEWAY`], 30 s).
    #[must_use]
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets where "now" comes from for `exp` and `nbf` (default
    /// [`SystemClock`]); tests pass a [`ManualClock`](crate::ManualClock).
    #[must_use]
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The one algorithm accepted, as it appears in a token's `alg` header
    /// (`"HS256"`, `"RS256"`, `"ES256"` or `"EdDSA"`).
    pub fn algorithm(&self) -> &'static str {
        self.alg.name()
    }

    /// The configured clock-skew allowance.
    pub fn leeway(&self) -> Duration {
        self.leeway
    }

    /// Verifies `token` (without the `Bearer ` prefix) synchronously.
    ///
    /// This is what [`Authenticator::authenticate`] runs. It does not log;
    /// `authenticate` logs the rejection reason.
    pub fn verify(&self, token: &str) -> std::result::Result<Principal, AuthRejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthRejection::TooLarge);
        }
        if token.is_empty() {
            return Err(AuthRejection::Missing);
        }
        let (message, payload, signature) = self.check_header(token)?;

        // The signature is checked before the payload is even decoded.
        if let Some(mac) = &self.hs256 {
            let signature = URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| AuthRejection::Malformed)?;
            // Constant-time comparison.
            mac.clone()
                .chain_update(message.as_bytes())
                .verify_slice(&signature)
                .map_err(|_| AuthRejection::BadSignature)?;
        } else {
            match jsonwebtoken::crypto::verify(
                signature,
                message.as_bytes(),
                &self.key,
                self.alg.jwt(),
            ) {
                Ok(true) => {}
                Ok(false) => return Err(AuthRejection::BadSignature),
                Err(e) => return Err(map_verify_error(e.kind())),
            }
        }
        let raw = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| AuthRejection::Malformed)?;
        let claims: RawClaims = json_object(&raw)?;

        self.check_times(&claims)?;
        self.check_issuer(&claims)?;
        self.check_audience(&claims)?;

        let user = match claims.sub {
            Some(Value::String(sub)) => {
                UserId::new(sub).map_err(|_| AuthRejection::BadClaim("sub"))?
            }
            _ => return Err(AuthRejection::BadClaim("sub")),
        };
        let roles = match claims.roles {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|r| r.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(AuthRejection::BadClaim("roles"))?,
            Some(_) => return Err(AuthRejection::BadClaim("roles")),
        };
        Ok(Principal { user, roles })
    }

    fn new(alg: Alg, key: DecodingKey) -> Self {
        Self {
            alg,
            key,
            hs256: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            clock: Arc::new(SystemClock),
        }
    }

    /// Builds the authenticator and makes the crypto backend load the key
    /// once, so a key of the wrong kind fails now and not on every request.
    fn checked(alg: Alg, key: DecodingKey) -> Result<Self> {
        jsonwebtoken::crypto::verify("", b"", &key, alg.jwt())
            .map_err(|e| key_error(alg.name(), &e))?;
        Ok(Self::new(alg, key))
    }

    /// Checks the shape and the header; returns the signed message
    /// (`header.payload`), the payload and the signature, all still encoded.
    fn check_header<'t>(
        &self,
        token: &'t str,
    ) -> std::result::Result<(&'t str, &'t str, &'t str), AuthRejection> {
        let Some((message, signature)) = token.rsplit_once('.') else {
            return Err(AuthRejection::Malformed);
        };
        let Some((header, payload)) = message.split_once('.') else {
            return Err(AuthRejection::Malformed);
        };
        if payload.contains('.') {
            return Err(AuthRejection::Malformed);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| AuthRejection::Malformed)?;
        let header: RawHeader = json_object(&raw)?;
        let Some(alg) = header.alg else {
            return Err(AuthRejection::Malformed);
        };
        if alg != self.alg.name() {
            return Err(AuthRejection::DisallowedAlgorithm);
        }
        // RFC 7515 §4.1.11: extensions we do not understand must be refused,
        // and we understand none.
        if header.crit {
            return Err(AuthRejection::Malformed);
        }
        Ok((message, payload, signature))
    }

    fn check_times(&self, claims: &RawClaims) -> std::result::Result<(), AuthRejection> {
        let now = self.clock.now().as_millis();
        let leeway = u64::try_from(self.leeway.as_millis()).unwrap_or(u64::MAX);

        let exp = numeric_date_ms(claims.exp.as_ref()).ok_or(AuthRejection::BadClaim("exp"))?;
        // RFC 7519 §4.1.4: valid only while now is *before* exp.
        if now >= exp.saturating_add(leeway) {
            return Err(AuthRejection::Expired);
        }
        match &claims.nbf {
            None | Some(Value::Null) => {}
            Some(v) => {
                let nbf = numeric_date_ms(Some(v)).ok_or(AuthRejection::BadClaim("nbf"))?;
                if now.saturating_add(leeway) < nbf {
                    return Err(AuthRejection::NotYetValid);
                }
            }
        }
        Ok(())
    }

    fn check_issuer(&self, claims: &RawClaims) -> std::result::Result<(), AuthRejection> {
        let Some(expected) = &self.issuer else {
            return Ok(());
        };
        match &claims.iss {
            Some(Value::String(iss)) if iss == expected => Ok(()),
            _ => Err(AuthRejection::WrongIssuer),
        }
    }

    fn check_audience(&self, claims: &RawClaims) -> std::result::Result<(), AuthRejection> {
        let aud = claims.aud.as_ref().filter(|v| !v.is_null());
        match (&self.audience, aud) {
            (None, None) => Ok(()),
            (None, Some(_)) | (Some(_), None) => Err(AuthRejection::WrongAudience),
            (Some(expected), Some(Value::String(aud))) if aud == expected => Ok(()),
            (Some(expected), Some(Value::Array(auds)))
                if auds.iter().any(|a| a.as_str() == Some(expected)) =>
            {
                Ok(())
            }
            (Some(_), Some(_)) => Err(AuthRejection::WrongAudience),
        }
    }
}

#[async_trait]
impl Authenticator for JwtAuthenticator {
    async fn authenticate(
        &self,
        credentials: &Credentials,
    ) -> Result<std::result::Result<Principal, AuthRejection>> {
        let result = match credentials.bearer.as_deref() {
            None => Err(AuthRejection::Missing),
            Some(token) => self.verify(token),
        };
        if let Err(reason) = &result {
            tracing::debug!(%reason, algorithm = self.alg.name(), "JWT rejected");
        }
        Ok(result)
    }
}

/// The JOSE header members this crate reads; the others are skipped
/// without being built.
#[derive(Deserialize)]
struct RawHeader<'a> {
    /// Anything but a string fails the parse.
    #[serde(default, borrow)]
    alg: Option<std::borrow::Cow<'a, str>>,
    /// Present at all, whatever its value (`null` included).
    #[serde(default, deserialize_with = "present")]
    crit: bool,
}

/// The claims this crate reads, each as whatever JSON value it holds
/// (`null` reads as absent, as the checks treat it); the others are
/// skipped without being built.
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    sub: Option<Value>,
    #[serde(default)]
    exp: Option<Value>,
    #[serde(default)]
    nbf: Option<Value>,
    #[serde(default)]
    iss: Option<Value>,
    #[serde(default)]
    aud: Option<Value>,
    #[serde(default)]
    roles: Option<Value>,
}

/// Deserializes any value and says it was there.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Parses a decoded header or claims set, which must be one JSON object (a
/// struct would also take an array, positionally). A member named twice
/// is refused (RFC 7515 §4: refuse or take the last; we refuse).
fn json_object<'a, T: Deserialize<'a>>(raw: &'a [u8]) -> std::result::Result<T, AuthRejection> {
    if raw.trim_ascii_start().first() != Some(&b'{') {
        return Err(AuthRejection::Malformed);
    }
    serde_json::from_slice(raw).map_err(|_| AuthRejection::Malformed)
}

/// A NumericDate (seconds since the epoch, possibly fractional) in
/// milliseconds, or `None` if absent or not a non-negative number.
fn numeric_date_ms(v: Option<&Value>) -> Option<u64> {
    let Some(Value::Number(n)) = v else {
        return None;
    };
    if let Some(secs) = n.as_u64() {
        return Some(secs.saturating_mul(1000));
    }
    let secs = n.as_f64()?;
    if secs.is_finite() && secs >= 0.0 {
        // `as` saturates for floats too large for u64.
        Some((secs * 1000.0) as u64)
    } else {
        None
    }
}

/// Maps a failure of the signature check itself (not a mismatch).
fn map_verify_error(kind: &ErrorKind) -> AuthRejection {
    match kind {
        // The signature part is not base64url.
        ErrorKind::Base64(_) => AuthRejection::Malformed,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => AuthRejection::DisallowedAlgorithm,
        // A signature of the wrong length or encoding for the algorithm
        // (ECDSA, EdDSA), and anything newer than this code: it does not
        // verify. Key errors cannot happen here: keys are loaded once at
        // construction.
        _ => AuthRejection::BadSignature,
    }
}

fn key_error(alg: &str, e: &jsonwebtoken::errors::Error) -> Error {
    Error::Config(format!("the {alg} verification key is not usable: {e}"))
}

/// The claims this crate reads and [`sign_hs256`] writes.
///
/// Times are NumericDates: whole seconds since the Unix epoch. Optional
/// claims that are unset are left out of the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Subject: the buyer's [`UserId`].
    pub sub: String,
    /// Expiry, seconds since the epoch (required by [`JwtAuthenticator`]).
    pub exp: u64,
    /// Not before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Roles granted; `"admin"` opens the admin routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims for `user`, issued at `now` and expiring `ttl` later (rounded
    /// up to the next whole second), with no roles, issuer or audience.
    pub fn new(user: &UserId, now: Timestamp, ttl: Duration) -> Self {
        Self {
            sub: user.as_str().to_owned(),
            exp: now.saturating_add(ttl).as_millis().div_ceil(1000),
            nbf: None,
            iat: Some(now.as_millis() / 1000),
            roles: Vec::new(),
            iss: None,
            aud: None,
        }
    }

    /// Replaces the roles.
    #[must_use]
    pub fn with_roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.roles = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the issuer (`iss`).
    #[must_use]
    pub fn with_issuer(mut self, issuer: &str) -> Self {
        self.iss = Some(issuer.to_owned());
        self
    }

    /// Sets the audience (`aud`).
    #[must_use]
    pub fn with_audience(mut self, audience: &str) -> Self {
        self.aud = Some(audience.to_owned());
        self
    }

    /// Sets "not before" (`nbf`), rounded down to the whole second.
    #[must_use]
    pub fn with_not_before(mut self, nbf: Timestamp) -> Self {
        self.nbf = Some(nbf.as_millis() / 1000);
        self
    }
}

/// Signs `claims` as an `HS256` token with `secret`.
///
/// For demo servers, load tests and tests; a production service usually
/// only verifies tokens that an identity provider issued.
///
/// # Errors
///
/// [`Error::Backend`] if the claims cannot be serialized or signed (not
/// expected to happen).
pub fn sign_hs256(secret: &[u8], claims: &Claims) -> Result<String> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| Error::backend("jwt", "sign", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_dates() {
        assert_eq!(numeric_date_ms(Some(&serde_json::json!(5))), Some(5000));
        assert_eq!(numeric_date_ms(Some(&serde_json::json!(1.5))), Some(1500));
        assert_eq!(numeric_date_ms(Some(&serde_json::json!(-1))), None);
        assert_eq!(numeric_date_ms(Some(&serde_json::json!("5"))), None);
        assert_eq!(numeric_date_ms(None), None);
    }

    #[test]
    fn claims_round_exp_up() {
        let user = UserId::new("u").unwrap();
        let c = Claims::new(
            &user,
            Timestamp::from_millis(1_500),
            Duration::from_millis(1),
        );
        assert_eq!(c.iat, Some(1));
        assert_eq!(c.exp, 2);
    }

    #[test]
    fn debug_hides_the_key() {
        let a = JwtAuthenticator::hs256(b"super-secret-value");
        assert!(!format!("{a:?}").contains("super-secret"));
    }
}
