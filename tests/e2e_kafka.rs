//! End to end through Kafka, as issue 8 asks: two example servers (axum and
//! actix) selling one Redis-held sale, their outbox relays producing to a
//! real Kafka-protocol broker, the order worker folding the topic into a
//! MariaDB `orders` table, and an outside client (Python `confluent-kafka`)
//! reading the topic. 10,000 buyers for 1,000 units: exactly 1,000 orders,
//! and the same 1,000 order ids in the answers, the table and the topic.
//!
//! Needs Redis, MariaDB and the broker: run through `scripts/test-all.sh`
//! (or the three `with-*.sh` scripts). Skipped without a broker, except
//! under `CI=true`.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::kafka::{KafkaOptions, ensure_topics};
use flashsale::mysql::MySqlOrderTable;
use flashsale::{Clock, ProductId, SystemClock, UserId};

#[path = "common/servers.rs"]
mod servers;
use servers::{Server, count_200, examples_dir, levels, loadtest, start};

const UNITS: u64 = 1_000;
const BUYERS_PER_SERVER: u64 = 5_000;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// The order worker as a process; killed when dropped.
struct Worker(std::process::Child);

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_worker(env: &[(&str, &str)]) -> Worker {
    let mut cmd = Command::new(examples_dir().join("order_worker"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("FLASHSALE_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Worker(cmd.spawn().expect("the order worker starts"))
}

fn read_ids(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_buyers_one_thousand_orders_in_answers_table_and_topic() {
    let Some(brokers) = std::env::var("FLASHSALE_KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "FLASHSALE_KAFKA_BROKERS is not set under CI=true: run scripts/test-all.sh"
        );
        eprintln!("skipped: no Kafka broker (run through backends/kafka/with-kafka.sh)");
        return;
    };
    let python = env_or("FLASHSALE_KAFKA_PYTHON", "python3");
    let redis = env_or("FLASHSALE_REDIS_URL", "redis://127.0.0.1:6379");
    let database = env_or("FLASHSALE_DATABASE_URL", "mysql://root@127.0.0.1:3306/test");
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("fst-e2e-{run}");
    let redis_prefix = format!("flashsale-test:e2e-kafka-{run}");
    let table_prefix = format!("fst_{}_", &run[20..]);
    let group = format!("fst-e2e-worker-{run}");
    let product = "kafka-drop";

    let kafka = KafkaOptions::new(&brokers).topic(&topic);
    ensure_topics(&kafka, &[&topic, &kafka.dead_letter_topic()], 3)
        .await
        .expect("the test topics are created");
    // The table exists before anyone asks it for rows.
    let table = MySqlOrderTable::connect(&database, &table_prefix)
        .await
        .expect("MariaDB answers (run through backends/mysql/with-mysql.sh)");
    table.migrate().await.unwrap();

    let _worker = start_worker(&[
        ("FLASHSALE_KAFKA_BROKERS", &brokers),
        ("FLASHSALE_KAFKA_TOPIC", &topic),
        ("FLASHSALE_DATABASE_URL", &database),
        ("FLASHSALE_MYSQL_PREFIX", &table_prefix),
        ("FLASHSALE_WORKER_GROUP", &group),
    ]);
    let server_env = [
        ("FLASHSALE_REDIS_URL", redis.as_str()),
        ("FLASHSALE_REDIS_PREFIX", redis_prefix.as_str()),
        ("FLASHSALE_KAFKA_BROKERS", brokers.as_str()),
        ("FLASHSALE_KAFKA_TOPIC", topic.as_str()),
        // Bots are not the subject here: every buyer gets through.
        ("FLASHSALE_RATE_LIMIT", "1000/1s"),
    ];
    let a: Server = start("axum_server", &server_env);
    let b: Server = start("actix_server", &server_env);

    let admin = Claims::new(
        &UserId::new("e2e-admin").unwrap(),
        SystemClock.now(),
        Duration::from_secs(600),
    )
    .with_roles(["admin"]);
    let token = sign_hs256(DEV_SECRET, &admin).unwrap();
    let created = reqwest::Client::new()
        .put(format!("{}/admin/products/{product}", a.base))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"stock": {UNITS}, "per_user_limit": 1, "per_order_max": 1}}"#
        ))
        .send()
        .await
        .expect("PUT answers");
    assert!(created.status().is_success(), "{:?}", created.text().await);

    let dir = std::env::temp_dir().join(format!("flashsale-e2e-kafka-{run}"));
    std::fs::create_dir_all(&dir).unwrap();
    let rush = |base: String, users: &'static str, out: std::path::PathBuf| {
        std::thread::spawn(move || {
            loadtest(&[
                "--url",
                &base,
                "--product",
                product,
                "--users",
                &BUYERS_PER_SERVER.to_string(),
                "--concurrency",
                "100",
                "--user-prefix",
                users,
                "--skip-stock-check",
                "--orders-out",
                out.to_str().unwrap(),
            ])
        })
    };
    let (out_a, out_b) = (dir.join("a.txt"), dir.join("b.txt"));
    let ra = rush(a.base.clone(), "ka-", out_a.clone());
    let rb = rush(b.base.clone(), "kb-", out_b.clone());
    let (oa, ob) = (ra.join().unwrap(), rb.join().unwrap());
    let (sa, sb) = (
        String::from_utf8_lossy(&oa.stdout).into_owned(),
        String::from_utf8_lossy(&ob.stdout).into_owned(),
    );
    assert!(oa.status.success(), "{sa}");
    assert!(ob.status.success(), "{sb}");
    assert_eq!(count_200(&sa) + count_200(&sb), UNITS, "{sa}\n{sb}");
    let answered: Vec<String> = read_ids(&out_a)
        .into_iter()
        .chain(read_ids(&out_b))
        .collect();
    let answered_set: BTreeSet<String> = answered.iter().cloned().collect();
    assert_eq!(answered.len() as u64, UNITS, "one order id per 200");
    assert_eq!(answered_set.len() as u64, UNITS, "order ids are distinct");
    let l = levels(&a.base, product).await;
    assert_eq!(
        (l["sold"].as_u64(), l["available"].as_u64()),
        (Some(UNITS), Some(0)),
        "{l}"
    );

    // The relays hand every order to Kafka and the worker folds it in.
    let pid = ProductId::new(product).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let in_table: BTreeSet<String> = loop {
        let ids = table.order_ids(Some(&pid)).await.unwrap();
        if ids.len() as u64 >= UNITS || Instant::now() > deadline {
            break ids.iter().map(ToString::to_string).collect();
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(in_table.len() as u64, UNITS, "rows in {table_prefix}orders");
    assert_eq!(
        in_table, answered_set,
        "the table holds exactly the answered orders"
    );
    let statuses = table.count_by_status(Some(&pid)).await.unwrap();
    assert_eq!(
        format!("{statuses:?}"),
        format!("{:?}", vec![(flashsale::EventType::Placed, UNITS)])
    );

    // An outside client finds every answered order on the topic.
    let reader = concat!(env!("CARGO_MANIFEST_DIR"), "/backends/kafka/read_topic.py");
    let read = Command::new(&python)
        .args([reader, &brokers, &topic])
        .output()
        .unwrap_or_else(|e| panic!("{python} {reader}: {e} (set FLASHSALE_KAFKA_PYTHON)"));
    let stdout = String::from_utf8_lossy(&read.stdout);
    assert!(
        read.status.success(),
        "the Python reader failed: {}\n{stdout}",
        String::from_utf8_lossy(&read.stderr)
    );
    let on_topic: BTreeSet<String> = stdout
        .lines()
        .filter(|l| l.ends_with(" placed"))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        on_topic, answered_set,
        "the topic's placed events are the answered orders"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
