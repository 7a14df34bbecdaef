//! End to end: both example servers take or make an `X-Request-Id`, send
//! it back, and write it on every log line of the request, in JSON with
//! `FLASHSALE_LOG_FORMAT=json`.

#[path = "common/servers.rs"]
mod servers;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::{Timestamp, UserId};
use serde_json::Value;

/// A buyer's token, signed with the servers' public development secret.
fn token(user: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let now = Timestamp::from_millis(now.as_millis() as u64);
    let claims = Claims::new(&UserId::new(user).unwrap(), now, Duration::from_secs(600));
    sign_hs256(DEV_SECRET, &claims).unwrap()
}

/// Sends one request; answers its status and `X-Request-Id`.
async fn send(
    client: &reqwest::Client,
    req: reqwest::RequestBuilder,
    id: Option<&str>,
) -> (u16, String) {
    let req = match id {
        Some(id) => req.header("x-request-id", id),
        None => req,
    };
    let r = client.execute(req.build().unwrap()).await.unwrap();
    let echoed = r
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned())
        .expect("every answer has X-Request-Id");
    (r.status().as_u16(), echoed)
}

async fn ids_reach_every_log_line(example: &str) {
    let dir =
        std::env::temp_dir().join(format!("flashsale-reqid-{}-{example}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = servers::start_logging_to(
        example,
        &[("FLASHSALE_LOG_FORMAT", "json"), ("RUST_LOG", "debug")],
        Stdio::from(log),
    );
    let base = &server.base;
    let c = reqwest::Client::new();
    let buyer = token("ann");

    // A purchase, a forged token, a non-admin on the admin route: each with
    // its own id, and each logs something of its own.
    let (status, echoed) = send(
        &c,
        c.post(format!("{base}/buy/demo-sneakers"))
            .bearer_auth(&buyer),
        Some("req-buy-1"),
    )
    .await;
    assert_eq!((status, echoed.as_str()), (200, "req-buy-1"));
    let forged = format!("{}x", &buyer[..buyer.len() - 1]);
    let (status, echoed) = send(
        &c,
        c.post(format!("{base}/buy/demo-sneakers"))
            .bearer_auth(&forged),
        Some("req-forged-2"),
    )
    .await;
    assert_eq!((status, echoed.as_str()), (401, "req-forged-2"));
    let (status, echoed) = send(
        &c,
        c.put(format!("{base}/admin/products/demo-sneakers"))
            .bearer_auth(&buyer)
            .body(r#"{"stock": 1, "per_user_limit": 1, "per_order_max": 1}"#),
        Some("req-admin-3"),
    )
    .await;
    assert_eq!((status, echoed.as_str()), (403, "req-admin-3"));
    // No id, and an unusable one: the server makes one (a UUID).
    let mut made = Vec::new();
    for id in [None, Some("has spaces, \"quotes\" and {braces}")] {
        let (status, echoed) = send(&c, c.get(format!("{base}/healthz")), id).await;
        assert_eq!(status, 200);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok(), "{echoed:?}");
        made.push(echoed);
    }
    assert_ne!(made[0], made[1]);

    // Lines are written as events happen; give the last one a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(server);
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // The id of the request span among the line's spans (outermost first).
    let request_id = |l: &Value| {
        let spans = l["spans"].as_array()?;
        let request: Vec<&Value> = spans.iter().filter(|s| s["name"] == "request").collect();
        assert!(request.len() <= 1, "nested request spans: {l}");
        request.first()?["request_id"].as_str().map(str::to_owned)
    };
    let find = |message: &str| -> Vec<&Value> {
        lines.iter().filter(|l| l["message"] == message).collect()
    };

    // The request's own log lines carry its id, also inside the engine's
    // spans and tasks.
    let purchased = find("purchase finished");
    assert_eq!(purchased.len(), 2, "{text}");
    let ids: BTreeSet<String> = purchased.iter().filter_map(|l| request_id(l)).collect();
    let want: BTreeSet<String> = ["req-buy-1", "req-forged-2"].map(str::to_owned).into();
    assert_eq!(ids, want, "{text}");
    let refused = find("JWT rejected");
    assert_eq!(refused.len(), 1, "{text}");
    assert_eq!(request_id(refused[0]).as_deref(), Some("req-forged-2"));
    let non_admin = find("non-admin tried an admin route");
    assert_eq!(non_admin.len(), 1, "{text}");
    assert_eq!(request_id(non_admin[0]).as_deref(), Some("req-admin-3"));
    // One access line per request, under the id the client was told.
    let served: BTreeSet<String> = find("request served")
        .into_iter()
        .map(|l| request_id(l).expect("an access line has its request's id"))
        .collect();
    let mut expected: BTreeSet<String> = ["req-buy-1", "req-forged-2", "req-admin-3"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    expected.extend(made);
    assert_eq!(served, expected, "{text}");
    // No request line is written under any other id.
    for l in &lines {
        if let Some(id) = request_id(l) {
            assert!(expected.contains(&id), "a line under an unknown id: {l}");
        }
    }
}

#[tokio::test]
async fn axum_ids_reach_every_log_line() {
    ids_reach_every_log_line("axum_server").await;
}

#[tokio::test]
async fn actix_ids_reach_every_log_line() {
    ids_reach_every_log_line("actix_server").await;
}
