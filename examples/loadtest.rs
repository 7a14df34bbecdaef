//! The seed project's JMeter plan, as a Rust program, and a soak test.
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
//! `--duration <SECS>` keeps sending until then instead of stopping after
//! `--requests`. `--mix buy=70,replay=10,confirm=8,cancel=7,restock=5`
//! sends a mixed workload instead of plain buys: purchases with an
//! `Idempotency-Key`, replays of earlier purchases (which must answer the
//! same order), confirms and cancels of this run's holds, and restocks with
//! an admin token. A mixed run keeps a book of every order it placed and
//! checks at the end that the stock adds up exactly (accepted − cancelled −
//! expired units, restocks in the total), that no replay doubled an order,
//! that no user went over the per-user cap as far as the answers show, and
//! that no order changed state on its own. `scripts/soak.sh` runs it for
//! five minutes against a Redis-backed server.
//!
//! Run with `--help` for every option. The exit status is 0 only when every
//! response was expected and every check passed; 1 otherwise; 2 for a usage
//! error. The operations, order book, checks and the sending loop live in
//! `loadtest/` (shared with `#[path]`, like the servers' `server/`).

#[path = "loadtest/book.rs"]
mod book;
#[path = "loadtest/checks.rs"]
mod checks;
#[path = "loadtest/mix.rs"]
mod mix;
#[path = "loadtest/modes.rs"]
mod modes;
#[path = "loadtest/workload.rs"]
mod workload;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flashsale::jwt::{Claims, DEV_SECRET, sign_hs256};
use flashsale::{Clock, ProductId, SystemClock, UserId};
use reqwest::{Client, StatusCode, Url};
use serde_json::Value;

use crate::mix::{Mix, Op};
use crate::workload::Target;

const HELP: &str = "\
flashsale load test: the seed's JMeter plan as a Rust program, and a soak.

USAGE:
    loadtest [--product <ID>] [OPTIONS]
    loadtest --duration <SECS> --mix <SPEC> [OPTIONS]     a soak
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
    --requests <N>         total requests [default: one per user; with
                           --duration: no limit]
    --duration <SECS>      keep sending for this long (then stop, also short
                           of --requests if that is given)
    --mix <SPEC>           a mixed workload instead of plain buys, e.g.
                           buy=70,replay=10,confirm=8,cancel=7,restock=5
                           (relative weights; see MIXED WORKLOAD)
    --restock-units <N>    units one restock adds [default: 10]
    --settle-wait <SECS>   a mixed run on a hold sale waits at most this long at
                           the end for the holds it left open to expire
                           [default: 180]
    --quantity <N>         units per request [default: 1]
    --secret <S>           HS256 secret [default: $FLASHSALE_JWT_SECRET, else the
                           development secret flashsale::jwt::DEV_SECRET]
    --issuer <ISS>         put `iss` in the tokens
    --audience <AUD>       put `aud` in the tokens
    --user-prefix <P>      user id prefix [default: loadtest-user-]; a mixed run
                           that restocks signs an admin token for <P>admin
    --timeout <SECS>       per-request timeout [default: 10]
    --max-duration <SECS>  stop sending after this long [default: 600, or
                           --duration]; not below --duration
    --write-tokens <FILE>  write one token per user, one per line, and exit
                           (the CSV for docs/loadtest/flash-sale-test.jmx)
    --skip-stock-check     do not check GET /products/<product> (no oversell or
                           unit checks)
    --orders-out <FILE>    write the order id of every purchase answered 200 to
                           FILE, one per line
    --allow-remote         allow a target that is not a loopback address
    -h, --help             print this help

EXPECTED RESPONSES:
    200, 400 with error sold_out or limit_exceeded, 429. Anything else (or a
    transport error) is unexpected and makes the exit status 1.

OVERSELL CHECK:
    GET <url>/products/<product> before and after the run. It fails unless
    total == available + held + sold, held + sold <= total, and the units
    held + sold during the run == (number of 200s) x quantity.

MIXED WORKLOAD (--mix):
    Operations, sent in the weights' proportions, evenly interleaved:
    buy      POST /buy/<product> with a fresh Idempotency-Key (user i mod users)
    replay   an earlier purchase of this run sent again: same user, key and
             body; it must answer the same order id (200) or 429
    confirm  POST /orders/<id>/confirm, as its buyer, of a random hold of this
             run that is not over; 200, or 409 order_not_held (e.g. expired)
    cancel   POST /orders/<id>/cancel, likewise
    restock  PUT /admin/products/<product> with an admin token and the sale's
             terms, stock raised by --restock-units (one restock at a time)
    confirm and cancel need a hold sale (hold_seconds set). A replay, confirm
    or cancel with nothing to act on yet is sent as a buy (and counted).
    At the end, holds the run left open may have expired unseen: the run
    waits for them (--settle-wait) or asks about the due ones with a cancel,
    so that the checks are exact. Then it checks:
    levels    total == available + held + sold
    oversell  units the answers give this run <= ever on sale; held + sold <= total
    units     held + sold changed by accepted - cancelled - expired units,
              sold by the confirmed units
    restock   total changed by exactly the units restocked
    replays   every replay answered its own order; no fresh key a known one
    user cap  no user owned more than per_user_limit at once (counting what
              the answers prove the user owned)
    states    orders were confirmed/cancelled only when asked, expired only
              after their hold, never moved from one final state to another
    They assume nobody else changes the product during the run.

EXIT STATUS:
    0 all good, 1 oversell, failed check or unexpected response, 2 usage error.
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
    /// `--duration`: send for this long.
    duration: Option<Duration>,
    /// `--mix`: the mixed workload.
    mix: Option<Mix>,
    restock_units: u64,
    settle_wait: Duration,
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
        duration: None,
        mix: None,
        restock_units: 10,
        settle_wait: Duration::from_secs(180),
        write_tokens: None,
        orders_out: None,
        stock_check: true,
        allow_remote: false,
    };

    let mut max_duration_given = false;
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
                a.max_duration = seconds("--max-duration", &value("--max-duration")?)?;
                max_duration_given = true;
            }
            "--duration" => {
                let d = seconds("--duration", &value("--duration")?)?;
                if d.is_zero() {
                    return Err("--duration must be above 0".into());
                }
                a.duration = Some(d);
            }
            "--mix" => a.mix = Some(Mix::parse(&value("--mix")?)?),
            "--restock-units" => {
                a.restock_units = positive("--restock-units", &value("--restock-units")?)?
            }
            "--settle-wait" => a.settle_wait = seconds("--settle-wait", &value("--settle-wait")?)?,
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
    if let Some(d) = a.duration {
        if !max_duration_given {
            a.max_duration = d;
        } else if a.max_duration < d {
            return Err(format!(
                "--max-duration {} s is below --duration {} s",
                a.max_duration.as_secs_f64(),
                d.as_secs_f64()
            ));
        }
    }
    if a.mix.as_ref().is_some_and(|m| m.has(Op::Restock)) {
        UserId::new(admin_id(&a.user_prefix)).map_err(|e| format!("--user-prefix: {e}"))?;
    }
    // Catch bad user ids now rather than after signing a thousand tokens.
    UserId::new(user_id(&a.user_prefix, a.users)).map_err(|e| format!("--user-prefix: {e}"))?;
    Ok(Some(a))
}

impl Args {
    /// How many requests to send: `--requests`, by default one per user;
    /// with `--duration`, `--requests` or no limit.
    fn planned(&self) -> Option<u64> {
        match self.duration {
            Some(_) => self.requests,
            None => Some(self.requests.unwrap_or(self.users)),
        }
    }
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

/// The admin of a mixed run's restocks.
fn admin_id(prefix: &str) -> String {
    format!("{prefix}admin")
}

/// How long the tokens must live: the whole run, however long it is
/// allowed to take, its settling, and an hour to spare.
fn token_ttl(a: &Args) -> Duration {
    let settle = if a.mix.is_some() {
        a.settle_wait
    } else {
        Duration::ZERO
    };
    a.max_duration + a.ramp_up + settle + Duration::from_secs(3600)
}

/// `Bearer <token>` for an admin (role `admin`), for restocks.
fn admin_header(a: &Args) -> Result<String, String> {
    let admin = UserId::new(admin_id(&a.user_prefix)).map_err(|e| format!("user id: {e}"))?;
    let mut claims = Claims::new(&admin, SystemClock.now(), token_ttl(a)).with_roles(["admin"]);
    if let Some(iss) = &a.issuer {
        claims = claims.with_issuer(iss);
    }
    if let Some(aud) = &a.audience {
        claims = claims.with_audience(aud);
    }
    sign_hs256(&a.secret, &claims)
        .map(|t| format!("Bearer {t}"))
        .map_err(|e| format!("signing the admin token: {e}"))
}

/// Signs one token per user; `header[i]` is `Bearer <token of user i>`.
fn mint_tokens(a: &Args) -> Result<Vec<String>, String> {
    let now = SystemClock.now();
    let ttl = token_ttl(a);
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
            // A 200 with a code is one whose body broke the contract.
            Answer::Status(200, None) | Answer::Status(429, _) => true,
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
                    Some(c) => format!("{s} {c}"),
                    None => format!("{s} {reason}"),
                }
            }
            Answer::Transport(kind) => format!("error: {kind}"),
        }
    }
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

/// `GET /products/{product}`: the stock levels and the whole body.
async fn product_state(
    client: &Client,
    base: &Url,
    product: &ProductId,
) -> Result<(Levels, Value), String> {
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
    let levels = Levels {
        total: field("total")?,
        available: field("available")?,
        held: field("held")?,
        sold: field("sold")?,
    };
    Ok((levels, v))
}

async fn levels(client: &Client, base: &Url, product: &ProductId) -> Result<Levels, String> {
    product_state(client, base, product).await.map(|(l, _)| l)
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

/// `200:n 400:n ...` for the progress bar.
fn short_counts<'a>(counts: impl Iterator<Item = (&'a Answer, u64)>) -> String {
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

    let buy_url = product_url(&a.url, "buy", &product);
    match (a.duration, a.planned()) {
        (None, Some(planned)) => println!("flashsale load test: POST {buy_url} x {planned}"),
        (Some(d), planned) => println!(
            "flashsale load test: POST {buy_url} for {} s{}",
            d.as_secs_f64(),
            planned.map_or(String::new(), |n| format!(" (at most {n} requests)"))
        ),
        (None, None) => unreachable!("without --duration the requests are counted"),
    }
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

    let target = Arc::new(Target {
        client,
        base: a.url.clone(),
        product,
        buy_url,
        body: Box::leak(format!("{{\"quantity\":{}}}", a.quantity).into_boxed_str()),
        quantity: a.quantity,
        auth: headers.into(),
    });
    let failed = match &a.mix {
        None => modes::plain(&a, target).await,
        Some(mix) => match modes::mixed(&a, target, mix).await {
            Ok(failed) => failed,
            Err(code) => return code,
        },
    };
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
