//! End to end: the example servers as real processes on ephemeral loopback
//! ports, hammered by the load-test example, checked over HTTP.
//!
//! The examples are built (once per run) with the same cargo that runs the
//! tests, so this file needs nothing but loopback; the Redis case needs the
//! Redis that `scripts/test-all.sh` provides.

#[path = "common/servers.rs"]
mod servers;
use servers::{count_200, levels, loadtest, start};

/// 2,000 buyers, 200 at a time, for the demo's 100 units: exactly 100
/// purchases, zero oversell, on each framework.
async fn sells_exactly_the_stock(example: &str) {
    let server = start(example, &[]);
    let out = loadtest(&[
        "--url",
        &server.base,
        "--product",
        "demo-sneakers",
        "--users",
        "2000",
        "--concurrency",
        "200",
        "--requests",
        "2000",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "load test failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(count_200(&stdout), 100, "{stdout}");
    assert!(stdout.contains("oversell    OK"), "{stdout}");
    let l = levels(&server.base, "demo-sneakers").await;
    assert_eq!(
        (l["sold"].as_u64(), l["available"].as_u64()),
        (Some(100), Some(0)),
        "{l}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn axum_example_under_load_sells_exactly_the_stock() {
    sells_exactly_the_stock("axum_server").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn actix_example_under_load_sells_exactly_the_stock() {
    sells_exactly_the_stock("actix_server").await;
}

/// Two servers (one axum, one actix) on one Redis behave as one shop: a
/// sale created through one is sold through both, and the two together
/// sell exactly its stock.
#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread")]
async fn two_servers_sharing_redis_sell_as_one_shop() {
    use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
    use flashsale::{Clock, SystemClock, UserId};
    use std::time::Duration;

    let url = std::env::var("FLASHSALE_REDIS_URL").unwrap_or("redis://127.0.0.1:6379".into());
    let prefix = format!("flashsale-test:e2e-{}", uuid::Uuid::now_v7().simple());
    let env = [
        ("FLASHSALE_REDIS_URL", url.as_str()),
        ("FLASHSALE_REDIS_PREFIX", prefix.as_str()),
    ];
    let a = start("axum_server", &env);
    let b = start("actix_server", &env);

    let admin = Claims::new(
        &UserId::new("e2e-admin").unwrap(),
        SystemClock.now(),
        Duration::from_secs(600),
    )
    .with_roles(["admin"]);
    let token = sign_hs256(DEV_SECRET, &admin).unwrap();
    let created = reqwest::Client::new()
        .put(format!("{}/admin/products/shared-drop", a.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(r#"{"stock": 100, "per_user_limit": 1, "per_order_max": 1}"#)
        .send()
        .await
        .expect("PUT answers");
    assert!(created.status().is_success(), "{:?}", created.text().await);
    // The other server sees the sale at once (the store is shared).
    assert_eq!(levels(&b.base, "shared-drop").await["available"], 100);

    let run = |base: String, users_prefix: &'static str| {
        std::thread::spawn(move || {
            loadtest(&[
                "--url",
                &base,
                "--product",
                "shared-drop",
                "--users",
                "1000",
                "--concurrency",
                "100",
                "--requests",
                "1000",
                "--user-prefix",
                users_prefix,
                "--skip-stock-check",
            ])
        })
    };
    let (ra, rb) = (run(a.base.clone(), "a-"), run(b.base.clone(), "b-"));
    let (oa, ob) = (ra.join().unwrap(), rb.join().unwrap());
    let (sa, sb) = (
        String::from_utf8_lossy(&oa.stdout).into_owned(),
        String::from_utf8_lossy(&ob.stdout).into_owned(),
    );
    assert!(oa.status.success(), "{sa}");
    assert!(ob.status.success(), "{sb}");
    let (na, nb) = (count_200(&sa), count_200(&sb));
    assert_eq!(na + nb, 100, "a sold {na}, b sold {nb}:\n{sa}\n{sb}");
    for base in [&a.base, &b.base] {
        let l = levels(base, "shared-drop").await;
        assert_eq!(
            (l["sold"].as_u64(), l["available"].as_u64()),
            (Some(100), Some(0)),
            "{l}"
        );
    }
}
