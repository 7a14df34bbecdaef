//! Sending the load: the dispatch loop both workloads share (plain buys,
//! and the `--mix` of buys, replays, confirms, cancels and restocks), each
//! operation's request and what its answer does to the order book, the
//! collector of answers and latencies, progress, and the settling of the
//! holds a mixed run leaves open.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flashsale::{ProductId, Timestamp};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::{Client, RequestBuilder, Url};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, mpsc};

use crate::book::{Book, HoldTarget, Placed, ReplayTarget, uuid_text};
use crate::checks::Restocks;
use crate::mix::{Mix, Op};
use crate::{Answer, Args, buy, transport_kind};

/// At the end of a mixed run, holds ending within this many milliseconds
/// count as due: the stock is read only when none is that close.
const DUE_MARGIN_MS: u64 = 5_000;
/// After the last open hold's end, the server's sweeper (once a second)
/// needs a moment to release it.
const EXPIRY_GRACE_MS: u64 = 1_500;
/// Plain lines of progress, when standard error is not a terminal.
const PROGRESS_LINE_EVERY: Duration = Duration::from_secs(10);

/// Where and as whom every request goes.
pub struct Target {
    pub client: Client,
    pub base: Url,
    pub product: ProductId,
    pub buy_url: Url,
    /// `{"quantity":n}`.
    pub body: &'static str,
    pub quantity: u32,
    /// `Bearer <token>` of user `i`.
    pub auth: Arc<[String]>,
}

/// The mixed workload's shared state.
pub struct Mixed {
    pub mix: Mix,
    pub book: Mutex<Book>,
    /// Held across a restock's request: restocks read-modify-write the
    /// stock, so they go one at a time.
    pub restock: tokio::sync::Mutex<Restocker>,
    /// Every purchase's `Idempotency-Key` is `<run_id>-<n>`.
    pub run_id: String,
    /// `Bearer <admin token>`, when the mix restocks.
    pub admin: Option<String>,
}

impl Mixed {
    pub fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().expect("the book's lock is never poisoned")
    }

    fn key(&self, n: u64) -> String {
        format!("{}-{n}", self.run_id)
    }
}

/// The restock operation's state.
pub struct Restocker {
    /// The sale's terms as `PUT /admin/products/{id}` takes them (the
    /// `stock` is set per request).
    pub terms: Map<String, Value>,
    pub stock: u64,
    pub report: Restocks,
}

/// One request to send.
#[derive(Debug)]
enum Job {
    Buy { user: u32, key: Option<u64> },
    Replay(ReplayTarget),
    Confirm(HoldTarget),
    Cancel(HoldTarget),
    Restock,
}

impl Job {
    fn op(&self) -> Op {
        match self {
            Job::Buy { .. } => Op::Buy,
            Job::Replay(_) => Op::Replay,
            Job::Confirm(_) => Op::Confirm,
            Job::Cancel(_) => Op::Cancel,
            Job::Restock => Op::Restock,
        }
    }
}

/// One answered request.
struct Sample {
    op: Op,
    answer: Answer,
    latency: Duration,
    /// The `order_id` of a plain run's `200`.
    order_id: Option<String>,
}

/// Whether `answer` is one the HTTP contract documents for `op` on a
/// healthy server. Everything else makes the run fail.
pub fn expected(op: Op, answer: &Answer) -> bool {
    match (op, answer) {
        (Op::Buy, a) => a.expected(),
        (Op::Replay, Answer::Status(200, None) | Answer::Status(429, _)) => true,
        // Confirming a confirmed order and cancelling a cancelled one
        // answer 200 again; an order that is no longer held is 409
        // order_not_held with its status (expired, or confirmed for a
        // cancel). Whether that status is plausible is the states check's
        // business.
        (Op::Confirm | Op::Cancel, Answer::Status(200, None)) => true,
        (Op::Confirm | Op::Cancel, Answer::Status(409, Some(code))) => {
            code.starts_with("order_not_held")
        }
        (Op::Restock, Answer::Status(200, None)) => true,
        _ => false,
    }
}

/// What the run did.
pub struct RunReport {
    pub counts: BTreeMap<(Op, Answer), u64>,
    pub overall: Histogram<u64>,
    pub per_op: BTreeMap<Op, Histogram<u64>>,
    /// The order ids of a plain run's `200`s.
    pub order_ids: Vec<String>,
    pub elapsed: Duration,
    pub sent: u64,
    pub planned: Option<u64>,
    /// `--max-duration` stopped it before its `--requests`.
    pub cut_short: bool,
    /// Replays, confirms and cancels that found nothing to act on and
    /// bought instead.
    pub fallbacks: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Sends the load: `--requests` of them, or for `--duration`, at most
/// `--concurrency` in flight; plain buys, or `mixed`'s mix.
pub async fn run(a: &Args, t: Arc<Target>, mixed: Option<Arc<Mixed>>) -> RunReport {
    let planned = a.planned();
    let progress = Progress::start(a, planned);

    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();
    let collector = {
        let progress = progress.clone();
        tokio::spawn(async move {
            let mut counts = BTreeMap::<(Op, Answer), u64>::new();
            let mut overall = histogram();
            let mut per_op = BTreeMap::<Op, Histogram<u64>>::new();
            let mut order_ids = Vec::new();
            let mut n = 0u64;
            while let Some(s) = rx.recv().await {
                order_ids.extend(s.order_id);
                let micros = u64::try_from(s.latency.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1);
                overall.saturating_record(micros);
                per_op
                    .entry(s.op)
                    .or_insert_with(histogram)
                    .saturating_record(micros);
                *counts.entry((s.op, s.answer)).or_default() += 1;
                n += 1;
                progress.answered();
                if n.is_multiple_of(64) {
                    progress.summarise(&counts);
                }
            }
            progress.summarise(&counts);
            (counts, overall, per_op, order_ids)
        })
    };

    let permits = Arc::new(Semaphore::new(a.concurrency));
    let start = Instant::now();
    // parse_args makes --max-duration at least --duration.
    let deadline = start + a.duration.unwrap_or(a.max_duration);
    let mut picker = mixed.as_ref().map(|m| m.mix.picker());
    let (mut sent, mut buys, mut fallbacks) = (0u64, 0u64, 0u64);
    let mut cut_short = false;
    loop {
        if planned.is_some_and(|p| sent >= p) {
            break;
        }
        let i = sent;
        if i < a.users && a.users > 1 && !a.ramp_up.is_zero() {
            // User `i` starts at i/(users-1) of the ramp-up.
            let offset = a.ramp_up.mul_f64(i as f64 / (a.users - 1) as f64);
            tokio::time::sleep_until((start + offset).into()).await;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = tokio::time::sleep_until(deadline.into()) => {
                cut_short = a.duration.is_none();
                break;
            }
        };
        if Instant::now() >= deadline {
            cut_short = a.duration.is_none();
            break;
        }
        let op = picker.as_mut().map_or(Op::Buy, |p| p.next_op());
        let job = match pick(op, mixed.as_deref()) {
            Some(job) => job,
            None => {
                if op != Op::Buy {
                    fallbacks += 1;
                }
                let user = (buys % a.users) as u32;
                let key = mixed.as_ref().map(|_| buys);
                buys += 1;
                Job::Buy { user, key }
            }
        };
        sent += 1;
        let (t, mixed, tx) = (t.clone(), mixed.clone(), tx.clone());
        tokio::spawn(async move {
            let sample = perform(job, &t, mixed.as_deref()).await;
            let _ = tx.send(sample);
            drop(permit);
        });
    }
    drop(tx);
    let (counts, overall, per_op, order_ids) =
        collector.await.expect("the collector does not panic");
    let elapsed = start.elapsed();
    progress.finish();
    RunReport {
        counts,
        overall,
        per_op,
        order_ids,
        elapsed,
        sent,
        planned,
        cut_short,
        fallbacks,
    }
}

/// The job for `op`, or `None` for a buy (also when there is nothing to
/// replay, confirm or cancel yet).
fn pick(op: Op, mixed: Option<&Mixed>) -> Option<Job> {
    let m = mixed?;
    match op {
        Op::Buy => None,
        Op::Replay => m.book().pick_replay().map(Job::Replay),
        Op::Confirm => m.book().pick_hold(Op::Confirm, now_ms()).map(Job::Confirm),
        Op::Cancel => m.book().pick_hold(Op::Cancel, now_ms()).map(Job::Cancel),
        Op::Restock => Some(Job::Restock),
    }
}

async fn perform(job: Job, t: &Target, m: Option<&Mixed>) -> Sample {
    let op = job.op();
    let started = Instant::now();
    let mut order_id = None;
    let (answer, started) = match (job, m) {
        (Job::Buy { user, key: None }, _) => {
            let (answer, id) = buy(&t.client, &t.buy_url, &t.auth[user as usize], t.body).await;
            order_id = id;
            (answer, started)
        }
        (
            Job::Buy {
                user,
                key: Some(key),
            },
            Some(m),
        ) => (buy_keyed(t, m, user, key).await, started),
        (Job::Replay(r), Some(m)) => (replay(t, m, &r).await, started),
        (Job::Confirm(h), Some(m)) => (end_hold(t, m, &h, Op::Confirm).await, started),
        (Job::Cancel(h), Some(m)) => (end_hold(t, m, &h, Op::Cancel).await, started),
        (Job::Restock, Some(m)) => restock(t, m).await,
        (job, None) => unreachable!("{job:?} needs the mixed workload"),
    };
    Sample {
        op,
        answer,
        latency: started.elapsed(),
        order_id,
    }
}

/// An answer with its JSON body (when it has one).
struct Reply {
    answer: Answer,
    json: Option<Value>,
}

async fn send(req: RequestBuilder) -> Reply {
    let failed = |e: reqwest::Error| Reply {
        answer: Answer::Transport(transport_kind(&e)),
        json: None,
    };
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    let status = resp.status().as_u16();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return failed(e),
    };
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    let code = if status == 200 {
        None
    } else {
        json.as_ref()
            .and_then(|j| j.get("error")?.as_str())
            .map(str::to_owned)
    };
    Reply {
        answer: Answer::Status(status, code),
        json,
    }
}

/// A `200` whose body does not say what the contract promises.
fn malformed(why: &str) -> Answer {
    Answer::Status(200, Some(format!("malformed: {why}")))
}

/// The order in an order body: id, status, hold end, `replayed`.
fn order_of(json: Option<&Value>) -> Result<Placed<'_>, &'static str> {
    let j = json.ok_or("not JSON")?;
    let order = j
        .get("order_id")
        .and_then(Value::as_str)
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
        .ok_or("no order_id UUID")?
        .as_u128();
    let status = j.get("status").and_then(Value::as_str).ok_or("no status")?;
    let expires_ms = match j.get("hold_expires_at") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_str()
                .and_then(|s| Timestamp::parse_rfc3339("hold_expires_at", s).ok())
                .ok_or("bad hold_expires_at")?
                .as_millis(),
        ),
    };
    let replayed = j.get("replayed").and_then(Value::as_bool).unwrap_or(false);
    Ok(Placed {
        order,
        status,
        expires_ms,
        replayed,
    })
}

fn buy_request(t: &Target, m: &Mixed, user: u32, key: u64) -> RequestBuilder {
    t.client
        .post(t.buy_url.clone())
        .header("authorization", &t.auth[user as usize])
        .header("content-type", "application/json")
        .header("idempotency-key", m.key(key))
        .body(t.body)
}

async fn buy_keyed(t: &Target, m: &Mixed, user: u32, key: u64) -> Answer {
    let reply = send(buy_request(t, m, user, key)).await;
    if reply.answer != Answer::Status(200, None) {
        return reply.answer;
    }
    let placed = order_of(reply.json.as_ref())
        .and_then(|p| m.book().placed(user, key, t.quantity, p, now_ms()));
    match placed {
        Ok(()) => reply.answer,
        Err(why) => malformed(why),
    }
}

async fn replay(t: &Target, m: &Mixed, r: &ReplayTarget) -> Answer {
    let reply = send(buy_request(t, m, r.user, r.key)).await;
    if reply.answer != Answer::Status(200, None) {
        return reply.answer;
    }
    match order_of(reply.json.as_ref()) {
        Ok(p) => {
            m.book().replayed(r, p.order, p.status, now_ms());
            if p.replayed {
                reply.answer
            } else {
                malformed("replay without replayed: true")
            }
        }
        Err(why) => malformed(why),
    }
}

/// Confirms or cancels a hold as its buyer.
async fn end_hold(t: &Target, m: &Mixed, h: &HoldTarget, op: Op) -> Answer {
    let mut url = t.base.clone();
    url.path_segments_mut()
        .expect("an http URL has a path")
        .pop_if_empty()
        .push("orders")
        .push(&uuid_text(h.order))
        .push(op.name());
    let reply = send(
        t.client
            .post(url)
            .header("authorization", &t.auth[h.user as usize]),
    )
    .await;
    let status = reply.json.as_ref().and_then(|j| j.get("status")?.as_str());
    match (&reply.answer, status) {
        (Answer::Status(200, None), Some(s)) => {
            m.book().hold_answered(h, s, now_ms());
            reply.answer
        }
        (Answer::Status(409, Some(code)), Some(s)) if code == "order_not_held" => {
            m.book().hold_answered(h, s, now_ms());
            Answer::Status(409, Some(format!("order_not_held ({s})")))
        }
        (Answer::Status(200, None), None) => {
            m.book().hold_failed(h);
            malformed("no status")
        }
        _ => {
            m.book().hold_failed(h);
            reply.answer
        }
    }
}

/// Adds the restock step to the sale's stock with the admin token. Returns
/// the answer and when the request started (after waiting for the
/// previous restock).
async fn restock(t: &Target, m: &Mixed) -> (Answer, Instant) {
    let mut r = m.restock.lock().await;
    let started = Instant::now();
    let Some(admin) = &m.admin else {
        unreachable!("an admin token is minted when the mix restocks")
    };
    let asked = r.stock + r.report.step;
    let mut body = r.terms.clone();
    body.insert("stock".into(), asked.into());
    let mut url = t.base.clone();
    url.path_segments_mut()
        .expect("an http URL has a path")
        .pop_if_empty()
        .extend(["admin", "products", t.product.as_str()]);
    let reply = send(
        t.client
            .put(url)
            .header("authorization", admin)
            .header("content-type", "application/json")
            .body(Value::Object(body).to_string()),
    )
    .await;
    match &reply.answer {
        Answer::Status(200, None) => {
            let Some(stock) = reply.json.as_ref().and_then(|j| j.get("stock")?.as_u64()) else {
                r.report.unknown += 1;
                return (malformed("no stock"), started);
            };
            let before = r.stock;
            if stock != asked {
                r.report
                    .findings
                    .add(|| format!("a restock to {asked} units answered a stock of {stock}"));
            }
            r.report.done += 1;
            r.report.units += stock.saturating_sub(before);
            r.stock = stock;
        }
        // Refused: nothing changed.
        Answer::Status(400..=499, _) => {}
        // A 5xx or a lost answer: it may have landed.
        _ => r.report.unknown += 1,
    }
    (reply.answer, started)
}

/// What settling the open holds did.
#[derive(Debug, Default)]
pub struct Settled {
    /// The run waited this long for its open holds to end.
    pub waited: Option<Duration>,
    /// Holds that ended while it waited.
    pub expired_waiting: u64,
    /// Answers to the cancels sent to holds at or near their end, when
    /// waiting for all of them would have taken longer than
    /// `--settle-wait`.
    pub probes: BTreeMap<Answer, u64>,
}

/// Makes the order book exact before the stock is read: a hold this run
/// left open may have expired on the server unseen. When every open hold
/// ends more than a few seconds from now, nothing is needed. Otherwise the
/// run waits until all of them have ended (if that is within `max_wait`),
/// or asks the server about the due ones with a cancel, which answers
/// `409 order_not_held (expired)` for a hold that is over.
pub async fn settle(t: &Target, m: &Mixed, max_wait: Duration, concurrency: usize) -> Settled {
    let mut settled = Settled::default();
    loop {
        let now = now_ms();
        let open = m.book().open_holds();
        if open.orders == 0 || open.earliest_ms > now + DUE_MARGIN_MS {
            return settled;
        }
        let wait = Duration::from_millis((open.latest_ms + EXPIRY_GRACE_MS).saturating_sub(now));
        if wait <= max_wait {
            eprintln!(
                "loadtest: waiting {:.1} s for the {} hold(s) ({} units) this run left open to \
                 expire",
                wait.as_secs_f64(),
                open.orders,
                open.units
            );
            tokio::time::sleep(wait).await;
            m.book().expire_open();
            settled.waited = Some(wait);
            settled.expired_waiting = open.orders;
            return settled;
        }
        let due = m.book().take_due(now + DUE_MARGIN_MS);
        eprintln!(
            "loadtest: asking the server about {} hold(s) at or near their end (cancel; waiting \
             for all {} open ones would exceed --settle-wait)",
            due.len(),
            open.orders
        );
        let answers: Vec<Answer> = futures::stream::iter(due)
            .map(|h| async move { end_hold(t, m, &h, Op::Cancel).await })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        for a in answers {
            *settled.probes.entry(a).or_default() += 1;
        }
    }
}

/// The progress bar (when standard error is a terminal) or, for a
/// `--duration` run, a plain line every few seconds (when it is not).
#[derive(Clone)]
struct Progress {
    bar: ProgressBar,
    by_time: bool,
    answered: Arc<AtomicU64>,
    summary: Arc<Mutex<String>>,
    ticker: Option<Arc<tokio::task::JoinHandle<()>>>,
}

impl Progress {
    fn start(a: &Args, planned: Option<u64>) -> Progress {
        let (bar, by_time) = match a.duration {
            None => {
                let bar = ProgressBar::new(planned.unwrap_or(0));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}) {msg}",
                    )
                    .expect("a valid template"),
                );
                (bar, false)
            }
            Some(d) => {
                let bar = ProgressBar::new(d.as_secs().max(1));
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} s {msg}",
                    )
                    .expect("a valid template"),
                );
                (bar, true)
            }
        };
        let mut p = Progress {
            bar,
            by_time,
            answered: Arc::default(),
            summary: Arc::default(),
            ticker: None,
        };
        if let Some(d) = a.duration {
            let lines = !std::io::stderr().is_terminal();
            let q = p.clone();
            p.ticker = Some(Arc::new(tokio::spawn(async move {
                let start = Instant::now();
                let mut last_line = start;
                let mut tick = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tick.tick().await;
                    let elapsed = start.elapsed();
                    q.bar
                        .set_position(elapsed.as_secs().min(d.as_secs().max(1)));
                    if lines && last_line.elapsed() >= PROGRESS_LINE_EVERY {
                        last_line = Instant::now();
                        let n = q.answered.load(Ordering::Relaxed);
                        eprintln!(
                            "loadtest: [{:>5.0}/{} s] {n} answered ({:.0}/s) {}",
                            elapsed.as_secs_f64(),
                            d.as_secs(),
                            n as f64 / elapsed.as_secs_f64().max(1e-9),
                            q.summary.lock().expect("never poisoned")
                        );
                    }
                }
            })));
        }
        p
    }

    fn answered(&self) {
        let n = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
        if !self.by_time {
            self.bar.set_position(n);
        }
    }

    fn summarise(&self, counts: &BTreeMap<(Op, Answer), u64>) {
        let s = crate::short_counts(counts.iter().map(|((_, a), n)| (a, *n)));
        self.bar.set_message(s.clone());
        *self.summary.lock().expect("never poisoned") = s;
    }

    fn finish(&self) {
        if let Some(t) = &self.ticker {
            t.abort();
        }
        self.bar.finish();
    }
}
