//! The order worker: consumes the order topic at least once and folds the
//! events into a MySQL `orders` table, idempotently; waits out database
//! outages (consumption paused, retrying) and sends what it cannot process
//! to `<topic>.dlq`.
//!
//! ```text
//! FLASHSALE_KAFKA_BROKERS=127.0.0.1:9092 \
//!   cargo run --release --example order_worker --features kafka,mysql
//! cargo run --example order_worker --features kafka,mysql -- --help
//! ```

#[path = "server/logging.rs"]
mod logging;

use std::process::ExitCode;
use std::time::Duration;

use flashsale::OrderSink;
use flashsale::kafka::{
    KafkaOptions, KafkaOrderSink, OrderWorker, WorkerOptions, replay_dead_letters,
};
use flashsale::mysql::MySqlOrderTable;

const DEFAULT_DATABASE_URL: &str = "mysql://root@127.0.0.1:3306/test";
const DEFAULT_PREFIX: &str = "flashsale_";

fn help() -> String {
    format!(
        "\
flashsale order worker: folds the order events of a Kafka topic into a MySQL
`orders` table (one row per order, its status only moves forward), at least
once, with retries and a dead-letter topic.

USAGE:
    cargo run --release --example order_worker --features kafka,mysql [-- OPTIONS]

OPTIONS:
    --replay-dlq    put the group's dead letters (<topic>.dlq) back on the order
                    topic, then exit (the running workers fold them again)
    -h, --help      print this help

ENVIRONMENT:
    FLASHSALE_KAFKA_BROKERS  Kafka bootstrap servers, host:port[,host:port...] (required)
    FLASHSALE_KAFKA_TOPIC    the order topic [default: {topic}]; dead letters go to
                             <topic>.dlq, which must exist too
    FLASHSALE_DATABASE_URL   MySQL/MariaDB for the orders table [default: {url}]
    FLASHSALE_MYSQL_PREFIX   table prefix: the table is <prefix>orders, created or
                             upgraded at start [default: {prefix}]
    FLASHSALE_WORKER_GROUP   Kafka consumer group; workers of one group share the
                             partitions [default: {group}]
    RUST_LOG                 log level: error, warn, info, debug or trace [default: info]
    FLASHSALE_LOG_FORMAT     text or json (one object per line) [default: text]

Ctrl-C or SIGTERM stops it gracefully: the batch in flight is finished and the
offsets of everything processed are committed. A progress line (events/s,
consumer lag) is logged every 10 s.
",
        topic = KafkaOptions::DEFAULT_TOPIC,
        url = DEFAULT_DATABASE_URL,
        prefix = DEFAULT_PREFIX,
        group = WorkerOptions::DEFAULT_GROUP,
    )
}

/// What the command line asks for.
enum Mode {
    Work,
    ReplayDeadLetters,
}

/// The settings read from the environment.
struct Config {
    kafka: KafkaOptions,
    database_url: String,
    prefix: String,
    group: String,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

impl Config {
    fn from_env() -> Result<Self, String> {
        let kafka = match KafkaOptions::from_env() {
            Ok(Some(kafka)) => kafka,
            Ok(None) => {
                return Err(format!(
                    "{} is not set. Set it to the Kafka bootstrap servers, e.g. \
                     {}=127.0.0.1:9092 (backends/kafka/with-kafka.sh starts a broker \
                     and exports it).",
                    KafkaOptions::BROKERS_VAR,
                    KafkaOptions::BROKERS_VAR
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let database_url =
            var("FLASHSALE_DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        if !database_url.starts_with("mysql://") && !database_url.starts_with("mariadb://") {
            return Err(format!(
                "FLASHSALE_DATABASE_URL: {:?} is not a mysql:// URL, e.g. {DEFAULT_DATABASE_URL}",
                redact(&database_url)
            ));
        }
        let prefix = var("FLASHSALE_MYSQL_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.into());
        let group =
            var("FLASHSALE_WORKER_GROUP").unwrap_or_else(|| WorkerOptions::DEFAULT_GROUP.into());
        Ok(Self {
            kafka,
            database_url,
            prefix,
            group,
        })
    }
}

/// The URL without its password, for printing.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

fn parse_args() -> Result<Option<Mode>, String> {
    let mut mode = Mode::Work;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "-h" | "--help" => {
                print!("{}", help());
                return Ok(None);
            }
            "--replay-dlq" => mode = Mode::ReplayDeadLetters,
            other => {
                return Err(format!(
                    "unexpected argument {other:?}; the only options are --replay-dlq and \
                     --help, configuration is by environment (see --help)"
                ));
            }
        }
    }
    Ok(Some(mode))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received: finishing the batch in flight");
}

/// Checks that the broker answers and `topic` exists.
async fn check_topic(kafka: &KafkaOptions, topic: &str) -> Result<(), String> {
    let sink = KafkaOrderSink::new(&kafka.clone().topic(topic)).map_err(|e| e.to_string())?;
    sink.ping().await.map_err(|e| {
        format!(
            "Kafka at {} cannot serve topic {topic:?}: {e}\n\
             Start a broker and create the topics (backends/kafka/with-kafka.sh does both), \
             or fix FLASHSALE_KAFKA_BROKERS / FLASHSALE_KAFKA_TOPIC.",
            kafka.brokers()
        )
    })
}

async fn replay(config: &Config) -> Result<(), String> {
    let dlq = config.kafka.dead_letter_topic();
    check_topic(&config.kafka, &dlq).await?;
    println!(
        "flashsale order worker: replaying the dead letters of group {:?}\n  from  {dlq}\n  to    {}",
        config.group,
        config.kafka.topic_name()
    );
    let n = replay_dead_letters(&config.kafka, &config.group, Duration::from_secs(60))
        .await
        .map_err(|e| format!("replay failed: {e} (run it again: it resumes where it stopped)"))?;
    println!("replayed {n} dead letter(s)");
    Ok(())
}

async fn work(config: Config) -> Result<(), String> {
    let url = redact(&config.database_url);
    let table = MySqlOrderTable::connect(&config.database_url, &config.prefix)
        .await
        .map_err(|e| match e {
            flashsale::Error::Config(msg) => {
                format!("{msg} (check FLASHSALE_DATABASE_URL and FLASHSALE_MYSQL_PREFIX)")
            }
            e => format!(
                "MySQL at {url} is not answering: {e}\n\
                 Start MariaDB (backends/mysql/with-mysql.sh starts one) or set \
                 FLASHSALE_DATABASE_URL."
            ),
        })?;
    table
        .migrate()
        .await
        .map_err(|e| format!("creating the table {}orders failed: {e}", config.prefix))?;
    check_topic(&config.kafka, config.kafka.topic_name()).await?;
    check_topic(&config.kafka, &config.kafka.dead_letter_topic()).await?;

    let options = WorkerOptions::new()
        .group(config.group.as_str())
        .progress_interval(Duration::from_secs(10));
    let worker = OrderWorker::new(&config.kafka, options, table).map_err(|e| e.to_string())?;
    println!(
        "\
flashsale order worker
  kafka    {brokers}
  topic    {topic} (dead letters: {dlq})
  group    {group}
  mysql    {url}, table {prefix}orders
Consuming; Ctrl-C or SIGTERM stops after the batch in flight. Progress every 10 s.",
        brokers = config.kafka.brokers(),
        topic = config.kafka.topic_name(),
        dlq = config.kafka.dead_letter_topic(),
        group = config.group,
        prefix = config.prefix,
    );
    let stats = worker
        .run(shutdown_signal())
        .await
        .map_err(|e| format!("the worker could not start: {e}"))?;
    println!(
        "stopped: {} event(s) handled, {} dead-lettered, {} retries, {} batches, {} stall(s) \
         waiting out the database; offsets committed",
        stats.handled, stats.dead_lettered, stats.retries, stats.batches, stats.stalls
    );
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match parse_args() {
        Ok(Some(mode)) => mode,
        Ok(None) => return ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            return ExitCode::from(2);
        }
    };
    let config = match logging::init().and_then(|()| Config::from_env()) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("error: {msg}\n(see --help)");
            return ExitCode::from(2);
        }
    };
    let result = match mode {
        Mode::Work => work(config).await,
        Mode::ReplayDeadLetters => replay(&config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}
