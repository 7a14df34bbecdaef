//! Worker options that make no sense are refused.

use super::*;

#[test]
fn worker_options_reject_nonsense() {
    let opts = KafkaOptions::new("127.0.0.1:1");
    #[allow(deprecated)] // still validated while it exists
    let no_attempts = WorkerOptions::new().max_attempts(0);
    for bad in [
        no_attempts,
        WorkerOptions::new().group(""),
        WorkerOptions::new().max_batch(0),
    ] {
        let e = OrderWorker::new(&opts, bad, TestHandler::default()).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
    }
}
