//! Request ids: the `X-Request-Id` a server takes from the client, or makes,
//! for every request, and the tracing span that puts it on every log line
//! of that request.
//!
//! Framework-neutral: the example servers' middleware (axum and actix) call
//! [`RequestId::from_header`], run the request inside [`RequestId::span`],
//! and send [`HEADER`] back. The engine's own tasks (a purchase run to
//! completion, a void retried in the background) keep the span they were
//! started in, so their log lines carry the id too.
//!
//! ```
//! use flashsale::http::request_id::RequestId;
//!
//! let id = RequestId::from_header(Some(b"checkout-7f3a"));
//! assert_eq!(id.as_str(), "checkout-7f3a");
//! // Missing or unusable ids are replaced by a fresh one (never a 400).
//! let made = RequestId::from_header(Some(b"has spaces\n"));
//! assert_ne!(made.as_str(), "has spaces\n");
//! assert_eq!(made.as_str().len(), 36);
//! ```

use std::fmt;

/// The header's name, lower-case.
pub const HEADER: &str = "x-request-id";

/// The longest client id that is kept, in bytes.
pub const MAX_LEN: usize = 128;

/// One request's id: 1 to [`MAX_LEN`] characters of `A-Z a-z 0-9` and
/// `- _ . : / + = @` (safe in logs, headers and JSON without escaping).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(String);

impl RequestId {
    /// The client's id when it is usable, otherwise a new one. An unusable
    /// id (empty, too long, other characters) is not an error: the request
    /// goes on under a fresh id, which the response tells the client.
    pub fn from_header(value: Option<&[u8]>) -> Self {
        value.and_then(Self::parse).unwrap_or_else(Self::generate)
    }

    /// The client's id, if usable.
    pub fn parse(value: &[u8]) -> Option<Self> {
        let usable = !value.is_empty()
            && value.len() <= MAX_LEN
            && value.iter().all(|&b| {
                b.is_ascii_alphanumeric()
                    || matches!(b, b'-' | b'_' | b'.' | b':' | b'/' | b'+' | b'=' | b'@')
            });
        // Checked above: every byte is ASCII.
        usable.then(|| Self(String::from_utf8_lossy(value).into_owned()))
    }

    /// A new id: a UUIDv7 (time-ordered, so ids sort by arrival in logs).
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string())
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The span a request runs in: `request{request_id=…}` at `INFO`, so every
    /// event of the request at `INFO` or above shows the id (in the text
    /// format as a prefix, in JSON under `span`).
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("request", request_id = %self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_client_ids_are_kept() {
        for id in [
            "a",
            "0af7651916cd43dd8448eb211c80319c",
            "checkout/7f3a:retry=2@edge-1.eu+x_y",
        ] {
            assert_eq!(RequestId::from_header(Some(id.as_bytes())).as_str(), id);
        }
        let longest = "x".repeat(MAX_LEN);
        assert_eq!(
            RequestId::from_header(Some(longest.as_bytes())).as_str(),
            longest
        );
    }

    #[test]
    fn unusable_ids_are_replaced() {
        let too_long = "x".repeat(MAX_LEN + 1);
        for raw in [
            &b""[..],
            b" ",
            b"a b",
            b"line\nbreak",
            b"quote\"",
            b"\xff\xfe",
            "caf\u{e9}".as_bytes(),
            too_long.as_bytes(),
        ] {
            let id = RequestId::from_header(Some(raw));
            assert_ne!(id.as_str().as_bytes(), raw);
            assert!(uuid::Uuid::parse_str(id.as_str()).is_ok(), "{id}");
        }
    }

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let a = RequestId::from_header(None);
        let b = RequestId::generate();
        assert_ne!(a, b);
        // A generated id is itself a usable client id.
        assert_eq!(RequestId::parse(a.as_str().as_bytes()), Some(a));
    }
}
