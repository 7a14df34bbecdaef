//! The seed project's JMeter plan, as a Rust program.
//!
//! Many virtual users, each with its own HS256 token, hammer
//! `POST /buy/{productId}` on a running flashsale server; at the end it
//! prints the count per status code, requests/s and latency percentiles, and
//! checks against `GET /products/{productId}` that nothing was oversold.
//!
//! ```text
//! cargo run --release --features axum,jwt --example axum_server &
//! cargo run --release --features jwt --example loadtest -- \
//!     --product demo-sneakers --users 1000 --concurrency 200 --ramp-up 5
//! ```
//!
//! Run with `--help` for every option. The exit status is 0 only when every
//! response was expected (200, 400 `sold_out`/`limit_exceeded`, 429) and the
//! stock adds up; 1 otherwise; 2 for a usage error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::{Clock, ProductId, SystemClock, UserId};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;
use tokio::sync::{Semaphore, mpsc};

const HELP: &str = "\
flashsale load test: the seed's JMeter plan as a Rust program.

USAGE:
    loadtest [--product <ID>] [OPTIONS]
    loadtest --write-tokens <FILE> [--users N] [--secret S] [...]

Every virtual user signs its own HS256 token (sub = <user-prefix><n>) with
the shared secret and sends `POST <url>/buy/<product>` with body
{\"quantity\": <quantity>}. Users start spread evenly over the ramp-up;
requests go to the users in turn (request i belongs to user i mod users),
with at most <concurrency> in flight.

OPTIONS:
    --url <URL>            server base URL
                           [default: http://$FLASHSALE_LISTEN, else http://127.0.0.1:8080]
    --product <ID>         the product to buy [default: demo-sneakers, the demo
                           servers' first seeded sale]
    --users <N>            virtual users, one token each [default: 1000]
    --concurrency <N>      requests in flight at most [default: 200]
    --ramp-up <SECS>       time over which the users start [default: 0]
    --requests <N>         total requests [default: one per user]
    --quantity <N>         units per request [default: 1]
    --secret <S>           HS256 secret [default: $FLASHSALE_JWT_SECRET, else the
                           development secret flashsale::jwt::DEV_SECRET]
    --issuer <ISS>         put `iss` in the tokens
    --audience <AUD>       put `aud` in the tokens
    --user-prefix <P>      user id prefix [default: loadtest-user-]
    --timeout <SECS>       per-request timeout [default: 10]
    --max-duration <SECS>  stop sending after this long [default: 600]
    --write-tokens <FILE>  write one token per user, one per line, and exit
                           (the CSV for docs/loadtest/flash-sale-test.jmx)
    --skip-stock-check     do not read GET /products/<product> (no oversell check)
    --orders-out <FILE>    write the order id of every 200 answer to FILE, one per line
    --allow-remote         allow a target that is not a loopback address
    -h, --help             print this help

EXPECTED RESPONSES:
    200, 400 with error sold_out or limit_exceeded, 429. Anything else (or a
    transport error) is unexpected and makes the exit status 1.

OVERSELL CHECK:
    GET <url>/products/<product> before and after the run. It fails unless
    total == available + held + sold, held + sold <= total, and the units
    held + sold during the run == (number of 200s) x quantity.

EXIT STATUS:
    0 all good, 1 oversell or unexpected response, 2 usage error.
";

#[derive(Debug, Clone)]
struct Args {
    url: Url,
    product: Option<ProductId>,
    users: u64,
    concurrency: usize,
    ramp_up: Duration,
    requests: Option<u64>,
    quantity: u32,
    secret: Vec<u8>,
    secret_is_dev: bool,
    issuer: Option<String>,
    audience: Option<String>,
    user_prefix: String,
    timeout: Duration,
    max_duration: Duration,
    write_tokens: Option<String>,
    orders_out: Option<String>,
    stock_check: bool,
    allow_remote: bool,
}

fn parse_args() -> Result<Option<Args>, String> {
    let listen = std::env::var("FLASHSALE_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let (secret, secret_is_dev) = match std::env::var("FLASHSALE_JWT_SECRET") {
        Ok(s) if !s.is_empty() => (s.into_bytes(), false),
        _ => (DEV_SECRET.to_vec(), true),
    };
    let mut url = format!("http://{listen}");
    let mut a = Args {
        url: Url::parse("http://127.0.0.1:8080").expect("a valid URL"),
        product: Some(ProductId::new("demo-sneakers").expect("a valid id")),
        users: 1000,
        concurrency: 200,
        ramp_up: Duration::ZERO,
        requests: None,
        quantity: 1,
        secret,
        secret_is_dev,
        issuer: None,
        audience: None,
        user_prefix: "loadtest-user-".into(),
        timeout: Duration::from_secs(10),
        max_duration: Duration::from_secs(600),
        write_tokens: None,
        orders_out: None,
        stock_check: true,
        allow_remote: false,
    };

    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        // Accept both `--flag value` and `--flag=value`.
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => url = value("--url")?,
            "--product" => {
                let v = value("--product")?;
                a.product = Some(ProductId::new(v).map_err(|e| format!("--product: {e}"))?);
            }
            "--users" => a.users = positive("--users", &value("--users")?)?,
            "--concurrency" => {
                a.concurrency = positive("--concurrency", &value("--concurrency")?)? as usize
            }
            "--ramp-up" => a.ramp_up = seconds("--ramp-up", &value("--ramp-up")?)?,
            "--requests" => a.requests = Some(positive("--requests", &value("--requests")?)?),
            "--quantity" => {
                a.quantity = u32::try_from(positive("--quantity", &value("--quantity")?)?)
                    .map_err(|_| "--quantity is too large".to_owned())?
            }
            "--secret" => {
                a.secret = value("--secret")?.into_bytes();
                a.secret_is_dev = a.secret == DEV_SECRET;
            }
            "--issuer" => a.issuer = Some(value("--issuer")?),
            "--audience" => a.audience = Some(value("--audience")?),
            "--user-prefix" => a.user_prefix = value("--user-prefix")?,
            "--timeout" => a.timeout = seconds("--timeout", &value("--timeout")?)?,
            "--max-duration" => {
                a.max_duration = seconds("--max-duration", &value("--max-duration")?)?
            }
            "--write-tokens" => a.write_tokens = Some(value("--write-tokens")?),
            "--skip-stock-check" => a.stock_check = false,
            "--orders-out" => a.orders_out = Some(value("--orders-out")?),
            "--allow-remote" => a.allow_remote = true,
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }

    a.url = Url::parse(url.trim_end_matches('/')).map_err(|e| format!("--url {url:?}: {e}"))?;
    if !matches!(a.url.scheme(), "http") {
        return Err(format!(
            "--url {}: only http:// is supported (this client is built without TLS)",
            a.url
        ));
    }
    if !a.allow_remote && !is_loopback(&a.url) {
        return Err(format!(
            "--url {}: not a loopback address; pass --allow-remote if you really mean to \
             load-test another machine",
            a.url
        ));
    }
    if a.timeout.is_zero() {
        return Err("--timeout must be above 0".into());
    }
    // Catch bad user ids now rather than after signing a thousand tokens.
    UserId::new(user_id(&a.user_prefix, a.users)).map_err(|e| format!("--user-prefix: {e}"))?;
    Ok(Some(a))
}

fn positive(name: &str, v: &str) -> Result<u64, String> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{name} must be a whole number above 0, not {v:?}")),
    }
}

fn seconds(name: &str, v: &str) -> Result<Duration, String> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..1e9).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("{name} must be a number of seconds, not {v:?}")),
    }
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn user_id(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:05}")
}

/// Signs one token per user; `header[i]` is `Bearer <token of user i>`.
fn mint_tokens(a: &Args) -> Result<Vec<String>, String> {
    let now = SystemClock.now();
    // Valid for the whole run, however long it is allowed to take.
    let ttl = a.max_duration + a.ramp_up + Duration::from_secs(3600);
    (0..a.users)
        .map(|i| {
            let user =
                UserId::new(user_id(&a.user_prefix, i + 1)).map_err(|e| format!("user id: {e}"))?;
            let mut claims = Claims::new(&user, now, ttl);
            if let Some(iss) = &a.issuer {
                claims = claims.with_issuer(iss);
            }
            if let Some(aud) = &a.audience {
                claims = claims.with_audience(aud);
            }
            sign_hs256(&a.secret, &claims).map_err(|e| format!("signing a token: {e}"))
        })
        .collect()
}

fn write_tokens(path: &str, tokens: &[String]) -> Result<(), String> {
    let mut out = String::with_capacity(tokens.len() * 200);
    for t in tokens {
        out.push_str(t);
        out.push('\n');
    }
    std::fs::write(path, out).map_err(|e| format!("writing {path}: {e}"))
}

/// What one request ended with: a status and, for 4xx/5xx, the error code
/// of the JSON body; or a transport error.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    Status(u16, Option<String>),
    Transport(String),
}

impl Answer {
    fn expected(&self) -> bool {
        match self {
            Answer::Status(200 | 429, _) => true,
            Answer::Status(400, Some(code)) => code == "sold_out" || code == "limit_exceeded",
            _ => false,
        }
    }

    fn label(&self) -> String {
        match self {
            Answer::Status(s, code) => {
                let reason = StatusCode::from_u16(*s)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                match code {
                    Some(c) if *s != 200 => format!("{s} {c}"),
                    _ => format!("{s} {reason}"),
                }
            }
            Answer::Transport(kind) => format!("error: {kind}"),
        }
    }
}

struct Sample {
    answer: Answer,
    latency: Duration,
    /// The `order_id` of a 200 answer.
    order_id: Option<String>,
}

async fn buy(
    client: &Client,
    url: &Url,
    auth: &str,
    body: &'static str,
) -> (Answer, Option<String>) {
    let resp = client
        .post(url.clone())
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => return (Answer::Transport(transport_kind(&e)), None),
    };
    let status = resp.status().as_u16();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return (Answer::Transport(transport_kind(&e)), None),
    };
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let field = |name: &str| Some(json.as_ref()?.get(name)?.as_str()?.to_owned());
    if status == 200 {
        (Answer::Status(status, None), field("order_id"))
    } else {
        (Answer::Status(status, field("error")), None)
    }
}

fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else if e.is_body() || e.is_decode() {
        "body".into()
    } else {
        "request".into()
    }
}

#[derive(Debug, Clone, Copy)]
struct Levels {
    total: u64,
    available: u64,
    held: u64,
    sold: u64,
}

/// Checks the stock after a run against the stock before it and the `ok`
/// answers 200 for `quantity` unit(s) each: the OK line, or every problem.
///
/// Three independent checks: the levels add up; the units on sale before
/// the run (plus any restock during it) cover what the 200s promised,
/// which is what overselling means and needs nothing but the count of 200s
/// and the levels before the run; and the units taken during the run are
/// exactly what the 200s promised (none taken without an answer, none
/// promised without being taken).
fn stock_check(
    before: &Levels,
    after: &Levels,
    ok: u64,
    quantity: u32,
) -> Result<String, Vec<String>> {
    let taken_before = before.held + before.sold;
    let taken_after = after.held + after.sold;
    let promised = ok * u64::from(quantity);
    let on_sale = before.available + after.total.saturating_sub(before.total);
    let mut problems = Vec::new();
    if after.available + after.held + after.sold != after.total {
        problems.push(format!(
            "available + held + sold = {} but total = {}",
            after.available + after.held + after.sold,
            after.total
        ));
    }
    if promised > on_sale {
        problems.push(format!(
            "OVERSOLD: {ok} responses 200 x quantity {quantity} = {promised} units, but only \
             {on_sale} were on sale (available before the run, plus any restock)"
        ));
    }
    let delta = taken_after as i128 - taken_before as i128;
    if delta != i128::from(promised) {
        problems.push(format!(
            "units held + sold during the run = {delta}, but {ok} responses were 200 \
             x quantity {quantity} = {promised}"
        ));
    }
    if problems.is_empty() {
        Ok(format!(
            "{delta} units taken during the run = {ok} responses 200 x {quantity} unit(s) \
             <= {on_sale} on sale; held + sold {taken_after} <= total {}",
            after.total
        ))
    } else {
        Err(problems)
    }
}

async fn levels(client: &Client, base: &Url, product: &ProductId) -> Result<Levels, String> {
    let url = product_url(base, "products", product);
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = resp.status();
    let bytes = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
    }
    let v: Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("GET {url}: not JSON: {e}"))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("GET {url}: no numeric {name:?} in {v}"))
    };
    Ok(Levels {
        total: field("total")?,
        available: field("available")?,
        held: field("held")?,
        sold: field("sold")?,
    })
}

fn product_url(base: &Url, route: &str, product: &ProductId) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("an http URL has a path")
        .pop_if_empty()
        .push(route)
        .push(product.as_str());
    url
}

struct Report {
    counts: BTreeMap<Answer, u64>,
    histogram: Histogram<u64>,
    /// The order ids of the 200 answers.
    order_ids: Vec<String>,
    elapsed: Duration,
    sent: u64,
    planned: u64,
}

async fn run(a: &Args, client: Client, headers: Vec<String>) -> Report {
    let product = a.product.as_ref().expect("checked by parse_args");
    let buy_url = Arc::new(product_url(&a.url, "buy", product));
    let body: &'static str = Box::leak(format!("{{\"quantity\":{}}}", a.quantity).into_boxed_str());
    let headers: Arc<[String]> = headers.into();
    let planned = a.requests.unwrap_or(a.users);

    let bar = ProgressBar::new(planned);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}) {msg}",
        )
        .expect("a valid template"),
    );

    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let collector = {
        let bar = bar.clone();
        tokio::spawn(async move {
            let mut counts = BTreeMap::<Answer, u64>::new();
            let mut histogram =
                Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
            let mut n = 0u64;
            let mut order_ids = Vec::new();
            while let Some(s) = rx.recv().await {
                order_ids.extend(s.order_id);
                let micros = u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX);
                histogram.saturating_record(micros.max(1));
                *counts.entry(s.answer).or_default() += 1;
                n += 1;
                bar.inc(1);
                if n.is_multiple_of(64) {
                    bar.set_message(short_counts(&counts));
                }
            }
            bar.set_message(short_counts(&counts));
            (counts, histogram, order_ids)
        })
    };

    let permits = Arc::new(Semaphore::new(a.concurrency));
    let start = Instant::now();
    let deadline = start + a.max_duration;
    let mut sent = 0u64;
    for i in 0..planned {
        let user = i % a.users;
        if i < a.users && a.users > 1 && !a.ramp_up.is_zero() {
            // User `user` starts at user/(users-1) of the ramp-up.
            let offset = a.ramp_up.mul_f64(user as f64 / (a.users - 1) as f64);
            tokio::time::sleep_until((start + offset).into()).await;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = tokio::time::sleep_until(deadline.into()) => break,
        };
        if Instant::now() >= deadline {
            break;
        }
        sent += 1;
        let (client, url, headers, tx) =
            (client.clone(), buy_url.clone(), headers.clone(), tx.clone());
        tokio::spawn(async move {
            let t0 = Instant::now();
            let (answer, order_id) = buy(&client, &url, &headers[user as usize], body).await;
            let _ = tx.send(Sample {
                answer,
                latency: t0.elapsed(),
                order_id,
            });
            drop(permit);
        });
    }
    drop(tx);
    let (counts, histogram, order_ids) = collector.await.expect("the collector does not panic");
    let elapsed = start.elapsed();
    bar.finish();
    Report {
        counts,
        histogram,
        order_ids,
        elapsed,
        sent,
        planned,
    }
}

fn short_counts(counts: &BTreeMap<Answer, u64>) -> String {
    let mut by_status = BTreeMap::<String, u64>::new();
    for (answer, n) in counts {
        let key = match answer {
            Answer::Status(s, _) => s.to_string(),
            Answer::Transport(_) => "err".into(),
        };
        *by_status.entry(key).or_default() += n;
    }
    by_status
        .iter()
        .map(|(k, n)| format!("{k}:{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

#[tokio::main]
async fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    if a.secret_is_dev {
        eprintln!(
            "loadtest: signing with the DEVELOPMENT secret (FLASHSALE_JWT_SECRET is unset); \
             a server with a real secret will answer 401"
        );
    }

    let t0 = Instant::now();
    let tokens = match mint_tokens(&a) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadtest: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &a.write_tokens {
        return match write_tokens(path, &tokens) {
            Ok(()) => {
                println!("wrote {} tokens to {path}", tokens.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadtest: {e}");
                ExitCode::from(2)
            }
        };
    }
    let minted_in = t0.elapsed();
    let headers: Vec<String> = tokens.into_iter().map(|t| format!("Bearer {t}")).collect();
    let product = a.product.clone().expect("checked by parse_args");

    let client = match Client::builder()
        .timeout(a.timeout)
        .connect_timeout(a.timeout)
        .pool_max_idle_per_host(a.concurrency)
        .tcp_nodelay(true)
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("loadtest: building the HTTP client: {e}");
            return ExitCode::from(2);
        }
    };

    let planned = a.requests.unwrap_or(a.users);
    println!(
        "flashsale load test: POST {} x {planned}",
        product_url(&a.url, "buy", &product)
    );
    println!(
        "  {} virtual users ({} tokens signed in {:.0?}), concurrency {}, ramp-up {:.1} s, \
         quantity {}",
        a.users,
        headers.len(),
        minted_in,
        a.concurrency,
        a.ramp_up.as_secs_f64(),
        a.quantity
    );

    let before = if a.stock_check {
        match levels(&client, &a.url, &product).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("loadtest: cannot read the stock before the run: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let report = run(&a, client.clone(), headers).await;
    let mut failed = false;
    if let Some(path) = &a.orders_out {
        let mut text = report.order_ids.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("loadtest: --orders-out {path}: {e}");
            failed = true;
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "\nresponses");
    let mut ok = 0u64;
    let mut unexpected = 0u64;
    for (answer, n) in &report.counts {
        let mark = if answer.expected() {
            ""
        } else {
            "  <- unexpected"
        };
        let _ = writeln!(out, "  {:<28} {n:>9}{mark}", answer.label());
        if matches!(answer, Answer::Status(200, _)) {
            ok += n;
        }
        if !answer.expected() {
            unexpected += n;
        }
    }
    let done: u64 = report.counts.values().sum();
    let _ = writeln!(out, "  {:<28} {done:>9}", "total");
    if report.sent < report.planned {
        failed = true;
        let _ = writeln!(
            out,
            "  stopped by --max-duration after {} of {} requests",
            report.sent, report.planned
        );
    }

    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let h = &report.histogram;
    let _ = writeln!(
        out,
        "\nthroughput  {:.1} requests/s ({done} in {:.2} s)",
        done as f64 / secs,
        secs
    );
    if !h.is_empty() {
        let _ = writeln!(
            out,
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
            ms(h.value_at_quantile(0.50)),
            ms(h.value_at_quantile(0.90)),
            ms(h.value_at_quantile(0.99)),
            ms(h.value_at_quantile(0.999)),
            ms(h.max()),
            h.mean() / 1000.0
        );
    }

    if unexpected > 0 {
        failed = true;
        let _ = writeln!(out, "\nFAIL: {unexpected} unexpected responses");
    }

    if let Some(before) = before {
        match levels(&client, &a.url, &product).await {
            Err(e) => {
                failed = true;
                let _ = writeln!(out, "\nFAIL: cannot read the stock after the run: {e}");
            }
            Ok(after) => {
                let _ = writeln!(
                    out,
                    "\nstock       before: total {} available {} held {} sold {}\n            \
                     after:  total {} available {} held {} sold {}",
                    before.total,
                    before.available,
                    before.held,
                    before.sold,
                    after.total,
                    after.available,
                    after.held,
                    after.sold
                );
                match stock_check(&before, &after, ok, a.quantity) {
                    Ok(line) => {
                        let _ = writeln!(out, "oversell    OK: {line}");
                    }
                    Err(problems) => {
                        failed = true;
                        for p in problems {
                            let _ = writeln!(out, "oversell    FAIL: {p}");
                        }
                    }
                }
            }
        }
    } else {
        let _ = writeln!(out, "\noversell    not checked (--skip-stock-check)");
    }

    let _ = writeln!(
        out,
        "\nresult      {}",
        if failed { "FAIL" } else { "PASS" }
    );
    print!("{out}");
    let _ = std::io::stdout().flush();
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn levels(total: u64, available: u64, held: u64, sold: u64) -> Levels {
        Levels {
            total,
            available,
            held,
            sold,
        }
    }

    #[test]
    fn a_clean_run_passes() {
        let before = levels(100, 100, 0, 0);
        assert!(stock_check(&before, &levels(100, 0, 0, 100), 50, 2).is_ok());
        assert!(stock_check(&before, &levels(100, 40, 10, 50), 30, 2).is_ok());
    }

    /// More 200s than units on sale is an oversell even when the server's
    /// levels after the run add up (and claim fewer units taken): the
    /// check that says OVERSOLD must catch it on its own.
    #[test]
    fn more_200s_than_units_on_sale_is_oversold() {
        let before = levels(100, 10, 0, 90);
        let after = levels(100, 0, 0, 100);
        let problems = stock_check(&before, &after, 11, 1).unwrap_err();
        assert!(
            problems.iter().any(|p| p.starts_with("OVERSOLD")),
            "{problems:?}"
        );
        // A restock during the run puts more units on sale.
        let restocked = levels(110, 0, 0, 110);
        assert!(stock_check(&before, &restocked, 20, 1).is_ok());
    }

    #[test]
    fn levels_that_do_not_add_up_or_units_taken_without_a_200_fail() {
        let before = levels(100, 100, 0, 0);
        let problems = stock_check(&before, &levels(100, 5, 0, 100), 100, 1).unwrap_err();
        assert!(problems[0].contains("total"), "{problems:?}");
        let problems = stock_check(&before, &levels(100, 90, 0, 10), 9, 1).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("during the run"), "{problems:?}");
    }
}
