//! Logging for the example programs (both servers and the order worker):
//! to stderr, at `RUST_LOG`'s level, as text or, with
//! `FLASHSALE_LOG_FORMAT=json`, one JSON object per line.
//!
//! In JSON, an event's fields are top-level keys and the spans it happened
//! in, outermost first, are under `spans`: every line of a request carries
//! `"spans":[{"request_id":"…","name":"request"}, …]`, including the lines
//! of the engine's inner spans (a purchase's, say).

/// Which format the logs are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable lines (colours on a terminal).
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Format {
    /// Reads `FLASHSALE_LOG_FORMAT` (`text`, the default, or `json`).
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("FLASHSALE_LOG_FORMAT") {
            Err(_) => Ok(Self::Text),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "text" => Ok(Self::Text),
                "json" => Ok(Self::Json),
                _ => Err(format!(
                    "FLASHSALE_LOG_FORMAT={v:?} is not a log format; use text or json"
                )),
            },
        }
    }
}

/// Installs the global subscriber: `RUST_LOG`'s level (`error`, `warn`,
/// `info`, `debug` or `trace`; default `info`) in `FLASHSALE_LOG_FORMAT`.
/// An error says which variable is wrong.
pub fn init() -> Result<(), String> {
    let level = match std::env::var("RUST_LOG") {
        Ok(l) if !l.trim().is_empty() => l.trim().parse::<tracing::Level>().map_err(|_| {
            format!("RUST_LOG={l:?} is not a level; use error, warn, info, debug or trace")
        })?,
        _ => tracing::Level::INFO,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = match Format::from_env()? {
        Format::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
        Format::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}
