//! `JwtAuthenticator`: one test per accepted or rejected case.
//!
//! Every time check runs against a `ManualClock`, so nothing here depends on
//! the wall clock. RS256/ES256/EdDSA tokens are signed with the test-only
//! keys in `tests/keys/`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use flashsale::Authenticator;
use flashsale::jwt::{Claims, DEFAULT_LEEWAY, DEV_SECRET, JwtAuthenticator, MAX_TOKEN_BYTES};
use flashsale::{AuthRejection, Principal};
use flashsale::{Credentials, ManualClock, Timestamp, UserId};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const SECRET: &[u8] = b"test-secret-of-at-least-thirty-two-bytes";
/// 2026-01-01T00:00:00Z, in seconds.
const NOW: u64 = 1_767_225_600;

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed_public.pem");

fn clock() -> ManualClock {
    ManualClock::new(Timestamp::from_millis(NOW * 1000))
}

fn hs256() -> JwtAuthenticator {
    JwtAuthenticator::hs256(SECRET).with_clock(Arc::new(clock()))
}

fn rs256() -> JwtAuthenticator {
    JwtAuthenticator::rs256_pem(RSA_PUBLIC)
        .unwrap()
        .with_clock(Arc::new(clock()))
}

/// Valid claims at `NOW`: alice, one hour to live.
fn claims() -> Value {
    json!({ "sub": "alice", "exp": NOW + 3600, "iat": NOW })
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn sign_hs(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
}

/// A token with a hand-made header and no signature check at all.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap()),
        signature
    )
}

async fn check(
    auth: &JwtAuthenticator,
    token: &str,
) -> std::result::Result<Principal, AuthRejection> {
    auth.authenticate(&Credentials::bearer(token))
        .await
        .expect("a JWT check never fails as infrastructure")
}

fn alice() -> UserId {
    UserId::new("alice").unwrap()
}

#[tokio::test]
async fn valid_hs256_token_is_accepted() {
    let p = check(&hs256(), &sign_hs(&claims())).await.unwrap();
    assert_eq!(p.user, alice());
    assert!(p.roles.is_empty());
}

#[tokio::test]
async fn valid_rs256_token_is_accepted() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let token = sign(Algorithm::RS256, &key, &claims());
    assert_eq!(check(&rs256(), &token).await.unwrap().user, alice());
}

#[tokio::test]
async fn valid_es256_token_is_accepted() {
    let auth = JwtAuthenticator::es256_pem(EC_PUBLIC)
        .unwrap()
        .with_clock(Arc::new(clock()));
    let key = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let token = sign(Algorithm::ES256, &key, &claims());
    assert_eq!(check(&auth, &token).await.unwrap().user, alice());
    assert_eq!(auth.algorithm(), "ES256");
}

#[tokio::test]
async fn valid_eddsa_token_is_accepted() {
    let auth = JwtAuthenticator::eddsa_pem(ED_PUBLIC)
        .unwrap()
        .with_clock(Arc::new(clock()));
    let key = EncodingKey::from_ed_pem(ED_PRIVATE).unwrap();
    let token = sign(Algorithm::EdDSA, &key, &claims());
    assert_eq!(check(&auth, &token).await.unwrap().user, alice());
    assert_eq!(auth.algorithm(), "EdDSA");
}

#[tokio::test]
async fn token_minted_by_sign_hs256_is_accepted() {
    let auth = JwtAuthenticator::hs256(DEV_SECRET)
        .with_issuer("flashsale")
        .with_audience("shop")
        .with_clock(Arc::new(clock()));
    let c = Claims::new(
        &alice(),
        Timestamp::from_millis(NOW * 1000),
        Duration::from_secs(60),
    )
    .with_issuer("flashsale")
    .with_audience("shop")
    .with_roles(["admin", "buyer"]);
    let token = flashsale::jwt::sign_hs256(DEV_SECRET, &c).unwrap();
    let p = check(&auth, &token).await.unwrap();
    assert_eq!(p.user, alice());
    assert!(p.is_admin());
    assert!(p.has_role("buyer"));
}

#[tokio::test]
async fn missing_token_is_rejected() {
    let auth = hs256();
    let r = auth.authenticate(&Credentials::none()).await.unwrap();
    assert_eq!(r, Err(AuthRejection::Missing));
    assert_eq!(check(&auth, "").await, Err(AuthRejection::Missing));
}

#[tokio::test]
async fn garbage_is_rejected_as_malformed() {
    let auth = hs256();
    for garbage in [
        "garbage",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "....",
        "eyJhbGciOiJIUzI1NiJ9",
        "%%%.%%%.%%%",
        // A header that is JSON but not an object, and one without `alg`.
        raw_token(&json!(["HS256"]), &claims(), "x").as_str(),
        raw_token(&json!({"typ": "JWT"}), &claims(), "x").as_str(),
        raw_token(&json!({"alg": 256}), &claims(), "x").as_str(),
    ] {
        assert_eq!(
            check(&auth, garbage).await,
            Err(AuthRejection::Malformed),
            "{garbage}"
        );
    }
}

#[tokio::test]
async fn payload_that_is_not_json_is_malformed() {
    let auth = hs256();
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(b"not json");
    let message = format!("{header}.{payload}");
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        check(&auth, &format!("{message}.{sig}")).await,
        Err(AuthRejection::Malformed)
    );
}

/// A correctly signed HS256 token of hand-written header and payload JSON.
fn signed_raw(header: &[u8], payload: &[u8]) -> String {
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    format!("{message}.{sig}")
}

/// Header and claims must each be one JSON object: an array of the same
/// values, a member named twice, a `crit` of `null` or trailing bytes are
/// refused, even when the signature is right.
#[tokio::test]
async fn header_and_claims_must_be_plain_objects() {
    let auth = hs256();
    let header = br#"{"alg":"HS256","typ":"JWT"}"#;
    let good = format!(r#"{{"sub":"alice","exp":{}}}"#, NOW + 3600);
    assert_eq!(
        check(&auth, &signed_raw(header, good.as_bytes())).await,
        Ok(Principal::user(alice()))
    );
    let bad_payloads = [
        format!(r#"["alice",{}]"#, NOW + 3600),
        format!(r#"{{"sub":"alice","sub":"root","exp":{}}}"#, NOW + 3600),
        format!(r#"{{"sub":"alice","exp":{}}} x"#, NOW + 3600),
        "null".to_owned(),
        "\"alice\"".to_owned(),
    ];
    for payload in &bad_payloads {
        assert_eq!(
            check(&auth, &signed_raw(header, payload.as_bytes())).await,
            Err(AuthRejection::Malformed),
            "{payload}"
        );
    }
    for header in [
        &br#"["HS256"]"#[..],
        br#"{"alg":"HS256","alg":"HS256"}"#,
        br#"{"alg":"HS256","crit":null}"#,
        br#"{"alg":null}"#,
        br#"{"alg":256}"#,
    ] {
        assert_eq!(
            check(&auth, &signed_raw(header, good.as_bytes())).await,
            Err(AuthRejection::Malformed),
            "{}",
            String::from_utf8_lossy(header)
        );
    }
    // Whitespace and escapes are still JSON.
    let spaced = br#"  { "alg" : "HS\u0032\u00356" }"#;
    assert_eq!(
        check(&auth, &signed_raw(spaced, good.as_bytes())).await,
        Ok(Principal::user(alice()))
    );
}

#[tokio::test]
async fn alg_none_is_rejected() {
    let auth = hs256();
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "JWT"});
        for signature in ["", "e30"] {
            let token = raw_token(&header, &claims(), signature);
            assert_eq!(
                check(&auth, &token).await,
                Err(AuthRejection::DisallowedAlgorithm),
                "alg {alg} with signature {signature:?}"
            );
        }
    }
    // The exact bytes of the classic attack, header `{"alg":"none","typ":"JWT"}`.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    assert_eq!(header, "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0");
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims()).unwrap());
    let token = format!("{header}.{payload}.");
    assert_eq!(
        check(&auth, &token).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
    assert_eq!(
        check(&rs256(), &token).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn wrong_secret_is_a_bad_signature() {
    let token = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret-of-thirty-two-bytes!!"),
        &claims(),
    );
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::BadSignature)
    );
}

#[tokio::test]
async fn tampered_payload_is_a_bad_signature() {
    let token = sign_hs(&claims());
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&json!({"sub": "mallory", "exp": NOW + 3600, "roles": ["admin"]}))
            .unwrap(),
    );
    parts[1] = &forged;
    assert_eq!(
        check(&hs256(), &parts.join(".")).await,
        Err(AuthRejection::BadSignature)
    );

    // A signature that is not even base64url.
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[2] = "!!!!";
    assert!(matches!(
        check(&hs256(), &parts.join(".")).await,
        Err(AuthRejection::BadSignature | AuthRejection::Malformed)
    ));

    // An RS256 token whose signature was made with a different RSA key
    // (here: the right key, but over another payload).
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let a = sign(Algorithm::RS256, &key, &claims());
    let b = sign(
        Algorithm::RS256,
        &key,
        &json!({"sub": "bob", "exp": NOW + 3600}),
    );
    let (a_msg, _) = a.rsplit_once('.').unwrap();
    let (_, b_sig) = b.rsplit_once('.').unwrap();
    assert_eq!(
        check(&rs256(), &format!("{a_msg}.{b_sig}")).await,
        Err(AuthRejection::BadSignature)
    );
}

#[tokio::test]
async fn expired_token_is_rejected() {
    let leeway = DEFAULT_LEEWAY.as_secs();
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW - leeway - 1}));
    assert_eq!(check(&hs256(), &token).await, Err(AuthRejection::Expired));
    // Exactly at exp (+ leeway) the token is already dead: valid only *before*.
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW - leeway}));
    assert_eq!(check(&hs256(), &token).await, Err(AuthRejection::Expired));
}

#[tokio::test]
async fn token_expires_as_the_clock_moves() {
    let clock = clock();
    let auth = JwtAuthenticator::hs256(SECRET)
        .with_leeway(Duration::ZERO)
        .with_clock(Arc::new(clock.clone()));
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 10}));
    assert!(check(&auth, &token).await.is_ok());
    clock.advance(Duration::from_millis(9_999));
    assert!(check(&auth, &token).await.is_ok());
    clock.advance(Duration::from_millis(1));
    assert_eq!(check(&auth, &token).await, Err(AuthRejection::Expired));
}

#[tokio::test]
async fn missing_or_non_numeric_exp_is_rejected() {
    for c in [
        json!({"sub": "alice"}),
        json!({"sub": "alice", "exp": null}),
        json!({"sub": "alice", "exp": "tomorrow"}),
        json!({"sub": "alice", "exp": -5}),
    ] {
        assert_eq!(
            check(&hs256(), &sign_hs(&c)).await,
            Err(AuthRejection::BadClaim("exp")),
            "{c}"
        );
    }
}

#[tokio::test]
async fn fractional_exp_is_accepted() {
    let token = sign_hs(&json!({"sub": "alice", "exp": (NOW + 60) as f64 + 0.5}));
    assert!(check(&hs256(), &token).await.is_ok());
}

#[tokio::test]
async fn not_yet_valid_token_is_rejected() {
    let leeway = DEFAULT_LEEWAY.as_secs();
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "nbf": NOW + leeway + 1}));
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::NotYetValid)
    );
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "nbf": "soon"}));
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::BadClaim("nbf"))
    );
}

#[tokio::test]
async fn token_becomes_valid_at_nbf() {
    let clock = clock();
    let auth = JwtAuthenticator::hs256(SECRET)
        .with_leeway(Duration::ZERO)
        .with_clock(Arc::new(clock.clone()));
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "nbf": NOW + 5}));
    assert_eq!(check(&auth, &token).await, Err(AuthRejection::NotYetValid));
    clock.advance(Duration::from_secs(5));
    assert!(check(&auth, &token).await.is_ok());
}

#[tokio::test]
async fn leeway_is_honoured() {
    let expired_10s_ago = sign_hs(&json!({"sub": "alice", "exp": NOW - 10}));
    let valid_in_10s = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "nbf": NOW + 10}));

    // Default leeway (30 s) absorbs 10 s of skew either way.
    assert_eq!(hs256().leeway(), Duration::from_secs(30));
    assert!(check(&hs256(), &expired_10s_ago).await.is_ok());
    assert!(check(&hs256(), &valid_in_10s).await.is_ok());

    // Without leeway, both are refused.
    let strict = hs256().with_leeway(Duration::ZERO);
    assert_eq!(
        check(&strict, &expired_10s_ago).await,
        Err(AuthRejection::Expired)
    );
    assert_eq!(
        check(&strict, &valid_in_10s).await,
        Err(AuthRejection::NotYetValid)
    );

    // A 5 s leeway is not enough for 10 s, 11 s is.
    let five = hs256().with_leeway(Duration::from_secs(5));
    assert_eq!(
        check(&five, &expired_10s_ago).await,
        Err(AuthRejection::Expired)
    );
    let eleven = hs256().with_leeway(Duration::from_secs(11));
    assert!(check(&eleven, &expired_10s_ago).await.is_ok());
    assert!(check(&eleven, &valid_in_10s).await.is_ok());
}

#[tokio::test]
async fn hs256_token_to_rs256_authenticator_is_a_disallowed_algorithm() {
    assert_eq!(
        check(&rs256(), &sign_hs(&claims())).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn rs256_token_to_hs256_authenticator_is_a_disallowed_algorithm() {
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let token = sign(Algorithm::RS256, &key, &claims());
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
}

/// The classic confusion attack: the attacker knows the RSA *public* key and
/// signs an HS256 token using the PEM bytes as the HMAC secret, hoping the
/// verifier feeds its RSA key to HMAC.
#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_rejected() {
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RSA_PUBLIC),
        &json!({"sub": "mallory", "exp": NOW + 3600, "roles": ["admin"]}),
    );
    assert_eq!(
        check(&rs256(), &forged).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
    // Same with the PEM text minus its trailing newline.
    let trimmed = std::str::from_utf8(RSA_PUBLIC).unwrap().trim_end();
    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(trimmed.as_bytes()),
        &json!({"sub": "mallory", "exp": NOW + 3600}),
    );
    assert_eq!(
        check(&rs256(), &forged).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn other_algorithms_of_the_same_family_are_disallowed() {
    let hs384 = sign(
        Algorithm::HS384,
        &EncodingKey::from_secret(SECRET),
        &claims(),
    );
    assert_eq!(
        check(&hs256(), &hs384).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
    let key = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ps256 = sign(Algorithm::PS256, &key, &claims());
    assert_eq!(
        check(&rs256(), &ps256).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
    // Case matters: `hs256` is not `HS256`.
    let token = raw_token(&json!({"alg": "hs256"}), &claims(), "x");
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::DisallowedAlgorithm)
    );
}

#[tokio::test]
async fn critical_header_extensions_are_refused() {
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let token =
        jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(SECRET)).unwrap();
    assert_eq!(check(&hs256(), &token).await, Err(AuthRejection::Malformed));
}

#[tokio::test]
async fn missing_sub_is_rejected() {
    let token = sign_hs(&json!({"exp": NOW + 3600}));
    assert_eq!(
        check(&hs256(), &token).await,
        Err(AuthRejection::BadClaim("sub"))
    );
}

#[tokio::test]
async fn empty_or_invalid_sub_is_rejected() {
    for sub in [
        json!(""),
        json!("bad\u{0}user"),
        json!("line\nbreak"),
        json!("x".repeat(UserId::MAX_LEN + 1)),
        json!(42),
        json!(null),
        json!(["alice"]),
    ] {
        let token = sign_hs(&json!({"sub": sub, "exp": NOW + 3600}));
        assert_eq!(
            check(&hs256(), &token).await,
            Err(AuthRejection::BadClaim("sub")),
            "{sub}"
        );
    }
}

#[tokio::test]
async fn wrong_issuer_is_rejected() {
    let auth = hs256().with_issuer("https://id.example");
    for c in [
        json!({"sub": "alice", "exp": NOW + 3600, "iss": "https://evil.example"}),
        json!({"sub": "alice", "exp": NOW + 3600}),
        json!({"sub": "alice", "exp": NOW + 3600, "iss": ["https://id.example"]}),
    ] {
        assert_eq!(
            check(&auth, &sign_hs(&c)).await,
            Err(AuthRejection::WrongIssuer),
            "{c}"
        );
    }
    let ok = json!({"sub": "alice", "exp": NOW + 3600, "iss": "https://id.example"});
    assert!(check(&auth, &sign_hs(&ok)).await.is_ok());
}

#[tokio::test]
async fn wrong_audience_is_rejected() {
    let auth = hs256().with_audience("flashsale");
    for c in [
        json!({"sub": "alice", "exp": NOW + 3600, "aud": "billing"}),
        json!({"sub": "alice", "exp": NOW + 3600, "aud": ["billing", "crm"]}),
        json!({"sub": "alice", "exp": NOW + 3600}),
        json!({"sub": "alice", "exp": NOW + 3600, "aud": 7}),
    ] {
        assert_eq!(
            check(&auth, &sign_hs(&c)).await,
            Err(AuthRejection::WrongAudience),
            "{c}"
        );
    }
    for c in [
        json!({"sub": "alice", "exp": NOW + 3600, "aud": "flashsale"}),
        json!({"sub": "alice", "exp": NOW + 3600, "aud": ["billing", "flashsale"]}),
    ] {
        assert!(check(&auth, &sign_hs(&c)).await.is_ok(), "{c}");
    }
    // With no audience configured, a token meant for someone else is refused.
    let foreign = json!({"sub": "alice", "exp": NOW + 3600, "aud": "billing"});
    assert_eq!(
        check(&hs256(), &sign_hs(&foreign)).await,
        Err(AuthRejection::WrongAudience)
    );
}

#[tokio::test]
async fn oversized_token_is_rejected_before_parsing() {
    // Not even a token: refused on length alone.
    let junk = "x".repeat(MAX_TOKEN_BYTES + 1);
    assert_eq!(check(&hs256(), &junk).await, Err(AuthRejection::TooLarge));

    // A correctly signed token just over the limit, and one just under it.
    let padded =
        |n: usize| sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "pad": "p".repeat(n)}));
    let mut n = MAX_TOKEN_BYTES * 3 / 4;
    while padded(n).len() > MAX_TOKEN_BYTES {
        n -= 1;
    }
    let fits = padded(n);
    assert!(fits.len() <= MAX_TOKEN_BYTES && fits.len() > MAX_TOKEN_BYTES - 8);
    assert!(check(&hs256(), &fits).await.is_ok());
    let too_big = padded(n + 3);
    assert!(too_big.len() > MAX_TOKEN_BYTES);
    assert_eq!(
        check(&hs256(), &too_big).await,
        Err(AuthRejection::TooLarge)
    );
}

#[tokio::test]
async fn roles_are_parsed() {
    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "roles": ["admin", "vip"]}));
    let p = check(&hs256(), &token).await.unwrap();
    assert_eq!(p.roles, vec!["admin".to_owned(), "vip".to_owned()]);
    assert!(p.is_admin());

    let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "roles": []}));
    assert!(check(&hs256(), &token).await.unwrap().roles.is_empty());
}

#[tokio::test]
async fn ill_formed_roles_are_rejected() {
    for roles in [
        json!("admin"),
        json!([1, 2]),
        json!(["admin", null]),
        json!({}),
    ] {
        let token = sign_hs(&json!({"sub": "alice", "exp": NOW + 3600, "roles": roles}));
        assert_eq!(
            check(&hs256(), &token).await,
            Err(AuthRejection::BadClaim("roles")),
            "{roles}"
        );
    }
}

#[test]
fn keys_of_the_wrong_kind_are_refused_at_construction() {
    assert!(JwtAuthenticator::rs256_pem(EC_PUBLIC).is_err());
    assert!(JwtAuthenticator::rs256_pem(b"not a pem").is_err());
    assert!(JwtAuthenticator::es256_pem(RSA_PUBLIC).is_err());
    assert!(JwtAuthenticator::es256_pem(ED_PUBLIC).is_err());
    assert!(JwtAuthenticator::eddsa_pem(EC_PUBLIC).is_err());
    assert!(JwtAuthenticator::eddsa_pem(b"").is_err());
    let err = JwtAuthenticator::rs256_pem(b"garbage").unwrap_err();
    assert!(matches!(err, flashsale::Error::Config(_)), "{err}");
}

#[test]
fn debug_output_hides_the_secret() {
    let auth = JwtAuthenticator::hs256(b"do-not-print-this-secret");
    let shown = format!("{auth:?}");
    assert!(!shown.contains("do-not-print"), "{shown}");
    assert!(shown.contains("HS256"), "{shown}");
}

#[test]
fn claims_new_sets_exp_and_iat() {
    let c = Claims::new(
        &alice(),
        Timestamp::from_millis(NOW * 1000 + 250),
        Duration::from_secs(60),
    );
    assert_eq!(c.sub, "alice");
    assert_eq!(c.iat, Some(NOW));
    assert_eq!(c.exp, NOW + 61); // rounded up, never shortened
    assert_eq!(c.nbf, None);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v, json!({"sub": "alice", "exp": NOW + 61, "iat": NOW}));
}
