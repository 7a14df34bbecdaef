//! schemathesis against both example servers: every operation of the
//! OpenAPI document (`GET /openapi.json`) is fuzzed, seeded and bounded,
//! and every answer must be documented (status, content type, headers,
//! body schema), never a 5xx, and schema-violating input must be refused.
//!
//! schemathesis comes from PyPI (`scripts/install-schemathesis.sh`, which
//! `scripts/test-all.sh` runs and which exports `FLASHSALE_SCHEMATHESIS`).
//! Where it is missing the test is skipped with a message, except under
//! `CI=true`, where that is a failure. Reproduce a run by hand with the
//! command this test prints.

#[path = "common/servers.rs"]
mod servers;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::{Timestamp, UserId};

/// The fixed seed: a failure here reproduces with the same command.
const SEED: &str = "20261125";
/// Cases per operation and phase: enough to reach every status the
/// document lists, small enough for about 30 s per server.
const MAX_EXAMPLES: &str = "30";
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
response_headers_conformance,response_schema_conformance,negative_data_rejection";

/// The `st` command, or `None` (with a message) when it is not installed.
fn schemathesis() -> Option<PathBuf> {
    let path = std::env::var_os("FLASHSALE_SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            let home = std::env::var_os("HOME")?;
            Some(PathBuf::from(home).join(".cache/flashsale/schemathesis-4.32.5/bin/st"))
        })
        .filter(|p| p.is_file());
    if path.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "schemathesis is missing under CI=true (scripts/install-schemathesis.sh installs it)"
        );
        eprintln!("SKIPPED: schemathesis is not installed (scripts/install-schemathesis.sh)");
    }
    path
}

/// An admin token (admins may also buy, confirm and cancel), signed with
/// the servers' public development secret.
fn admin_token() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now = Timestamp::from_millis(now.as_millis() as u64);
    let admin = UserId::new("schemathesis-admin").unwrap();
    let claims = Claims::new(&admin, now, Duration::from_secs(3600)).with_roles(["admin"]);
    sign_hs256(DEV_SECRET, &claims).unwrap()
}

fn conforms_to_the_document(example: &str) {
    let Some(st) = schemathesis() else { return };
    // A high quota, so fuzzing reaches the purchase path, not only 429s.
    let server = servers::start(example, &[("FLASHSALE_RATE_LIMIT", "100000/1s")]);
    let work = std::env::temp_dir().join(format!("flashsale-st-{}-{example}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let schema = format!("{}/openapi.json", server.base);
    let auth = format!("Authorization: Bearer {}", admin_token());
    let args = [
        "run",
        &schema,
        "--checks",
        CHECKS,
        "--seed",
        SEED,
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--header",
        &auth,
    ];
    eprintln!("running: {} {}", st.display(), args.join(" "));
    // Its own directory: schemathesis writes caches and reports there.
    let out = Command::new(&st)
        .args(args)
        .current_dir(&work)
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis runs");
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found answers of {example} that break the document \
         (exit {}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // It really tested every operation (a schema it could not load, or an
    // empty selection, must not pass quietly). schemathesis leaves out the
    // operation that serves the document itself.
    let operations = flashsale::http::paths::ROUTES.len() - 1;
    assert!(
        stdout.contains(&format!("Selected: {operations}/{operations}"))
            && stdout.contains(&format!("Tested: {operations}")),
        "schemathesis did not test all {operations} operations:\n{stdout}"
    );
    assert!(stdout.contains(" passed"), "{stdout}");
}

#[test]
fn axum_conforms_to_the_document() {
    conforms_to_the_document("axum_server");
}

#[test]
fn actix_conforms_to_the_document() {
    conforms_to_the_document("actix_server");
}
