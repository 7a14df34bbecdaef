//! The two kinds of run, end to end: the plain run (buys only, the seed's
//! JMeter plan) and the mixed run (`--mix`): reading the product, sending
//! the load, settling, checking, and printing the report.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::Value;

use crate::book::Book;
use crate::checks::{self, Check, Restocks};
use crate::mix::{Mix, Op};
use crate::workload::{self, Mixed, Restocker, RunReport, Target};
use crate::{Answer, Args, Levels, admin_header, levels, product_state, stock_check};

/// The plain run: buys only. Prints its report; `true` when it failed.
pub async fn plain(a: &Args, target: Arc<Target>) -> bool {
    let (client, product) = (target.client.clone(), target.product.clone());
    let before = if a.stock_check {
        match levels(&client, &a.url, &product).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("loadtest: cannot read the stock before the run: {e}");
                return true;
            }
        }
    } else {
        None
    };

    let report = workload::run(a, target, None).await;
    let mut failed = false;
    if let Some(path) = &a.orders_out {
        failed |= write_orders(path, report.order_ids.iter().cloned());
    }

    let mut out = String::new();
    let _ = writeln!(out, "\nresponses");
    let mut ok = 0u64;
    let mut unexpected = 0u64;
    for ((_, answer), n) in &report.counts {
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
    failed |= cut_short(&mut out, &report);
    throughput(&mut out, &report, false);

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
                stock_lines(&mut out, &before, &after);
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
    failed
}

/// The mixed run (`--mix`). Prints its report; `Ok(true)` when it failed,
/// `Err` with the exit code when it could not start.
pub async fn mixed(a: &Args, target: Arc<Target>, mix: &Mix) -> Result<bool, ExitCode> {
    let (client, product) = (target.client.clone(), target.product.clone());
    // The sale's terms: the cap, whether it holds, what a restock sends.
    let (before, sale) = product_state(&client, &a.url, &product)
        .await
        .map_err(|e| {
            eprintln!("loadtest: cannot read the product before the run: {e}");
            ExitCode::FAILURE
        })?;
    let holds = sale.get("hold_seconds").and_then(Value::as_u64);
    if holds.is_none() && (mix.has(Op::Confirm) || mix.has(Op::Cancel)) {
        eprintln!(
            "loadtest: --mix {mix}: confirm and cancel end holds, but {product} is not a hold \
             sale (its hold_seconds is null)"
        );
        return Err(ExitCode::from(2));
    }
    let cap = sale
        .get("per_user_limit")
        .and_then(Value::as_u64)
        .unwrap_or(u64::MAX);
    let terms = [
        "per_user_limit",
        "per_order_max",
        "starts_at",
        "ends_at",
        "hold_seconds",
    ]
    .into_iter()
    .filter_map(|k| Some((k.to_owned(), sale.get(k)?.clone())))
    .collect();
    let admin = if mix.has(Op::Restock) {
        Some(admin_header(a).map_err(|e| {
            eprintln!("loadtest: {e}");
            ExitCode::from(2)
        })?)
    } else {
        None
    };
    let mut rng = fastrand::Rng::new();
    let run_id = format!("lt-{:012x}", rng.u64(..) >> 16);
    let m = Arc::new(Mixed {
        mix: mix.clone(),
        book: Mutex::new(Book::new(a.users, cap, rng)),
        restock: tokio::sync::Mutex::new(Restocker {
            terms,
            stock: sale
                .get("stock")
                .and_then(Value::as_u64)
                .unwrap_or(before.total),
            report: Restocks {
                step: a.restock_units,
                ..Restocks::default()
            },
        }),
        run_id: run_id.clone(),
        admin,
    });
    println!(
        "  mix {mix}; idempotency keys {run_id}-<n>; sale: per-user cap {cap}, {}",
        match holds {
            Some(h) => format!("holds {h} s"),
            None => "no holds".into(),
        }
    );

    let report = workload::run(a, target.clone(), Some(m.clone())).await;
    let settled = workload::settle(&target, &m, a.settle_wait, a.concurrency).await;

    let mut failed = false;
    let mut out = String::new();
    let _ = writeln!(out, "\nresponses");
    let mut unexpected = 0u64;
    for ((op, answer), n) in &report.counts {
        let ok = workload::expected(*op, answer);
        let mark = if ok { "" } else { "  <- unexpected" };
        let _ = writeln!(
            out,
            "  {:<8} {:<28} {n:>9}{mark}",
            op.name(),
            answer.label()
        );
        if !ok {
            unexpected += n;
        }
    }
    let done: u64 = report.counts.values().sum();
    let _ = writeln!(out, "  {:<37} {done:>9}", "total");
    if report.fallbacks > 0 {
        let _ = writeln!(
            out,
            "  ({} replays/confirms/cancels had nothing to act on yet and bought instead)",
            report.fallbacks
        );
    }
    failed |= cut_short(&mut out, &report);
    throughput(&mut out, &report, true);

    let tally = m.book().tally();
    let _ = writeln!(
        out,
        "\norders      {} placed for {} units: held {}, confirmed {}, cancelled {}, expired {}",
        tally.orders, tally.units, tally.held, tally.confirmed, tally.cancelled, tally.expired
    );
    if let Some(w) = settled.waited {
        let _ = writeln!(
            out,
            "settle      waited {:.1} s for the {} hold(s) left open to expire ({} units)",
            w.as_secs_f64(),
            settled.expired_waiting,
            tally.expired_waited
        );
    }
    if !settled.probes.is_empty() {
        let mut parts = Vec::new();
        for (answer, n) in &settled.probes {
            let ok = workload::expected(Op::Cancel, answer);
            let mark = if ok { "" } else { " <- unexpected" };
            parts.push(format!("{} x{n}{mark}", answer.label()));
            if !ok {
                unexpected += n;
            }
        }
        let _ = writeln!(
            out,
            "settle      cancelled the holds at or near their end: {}",
            parts.join(", ")
        );
    }
    if unexpected > 0 {
        failed = true;
        let _ = writeln!(out, "\nFAIL: {unexpected} unexpected responses");
    }

    let mut checks = Vec::new();
    if a.stock_check {
        let restocks = m.restock.lock().await.report.clone();
        // Holds the run waited out are released by the server's sweeper
        // within a second or so: read until the levels agree, or 30 s.
        let patience = Duration::from_secs(if settled.waited.is_some() { 30 } else { 0 });
        let until = Instant::now() + patience;
        loop {
            match levels(&client, &a.url, &product).await {
                Err(e) => {
                    failed = true;
                    let _ = writeln!(out, "\nFAIL: cannot read the stock after the run: {e}");
                    break;
                }
                Ok(after) => {
                    let stock = checks::stock_checks(&before, &after, &tally, &restocks);
                    if stock.iter().all(Check::passed) || Instant::now() >= until {
                        stock_lines(&mut out, &before, &after);
                        checks.extend(stock);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    } else {
        let _ = writeln!(out, "\nstock       not checked (--skip-stock-check)");
    }
    checks.extend(checks::book_checks(&m.book(), cap, mix.has(Op::Replay)));
    let _ = writeln!(out, "invariants");
    for c in &checks {
        match &c.verdict {
            Ok(why) => {
                let _ = writeln!(out, "  {:<10} OK: {why}", c.name);
            }
            Err(problems) => {
                failed = true;
                for p in problems {
                    let _ = writeln!(out, "  {:<10} FAIL: {p}", c.name);
                }
            }
        }
    }
    if let Some(path) = &a.orders_out {
        let ids: Vec<String> = m.book().order_ids().collect();
        failed |= write_orders(path, ids.into_iter());
    }
    let _ = writeln!(
        out,
        "\nresult      {}",
        if failed { "FAIL" } else { "PASS" }
    );
    print!("{out}");
    Ok(failed)
}

/// Writes `--orders-out`; `true` when that failed.
fn write_orders(path: &str, ids: impl Iterator<Item = String>) -> bool {
    let mut text = String::new();
    for id in ids {
        text.push_str(&id);
        text.push('\n');
    }
    if text.is_empty() {
        text.push('\n');
    }
    match std::fs::write(path, text) {
        Ok(()) => false,
        Err(e) => {
            eprintln!("loadtest: --orders-out {path}: {e}");
            true
        }
    }
}

/// Notes a run `--max-duration` stopped early; `true` then.
fn cut_short(out: &mut String, report: &RunReport) -> bool {
    if !report.cut_short {
        return false;
    }
    let _ = match report.planned {
        Some(planned) => writeln!(
            out,
            "  stopped by --max-duration after {} of {planned} requests",
            report.sent
        ),
        None => writeln!(
            out,
            "  stopped by --max-duration after {} requests",
            report.sent
        ),
    };
    true
}

fn latency_line(h: &Histogram<u64>) -> String {
    format!(
        "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}  (mean {:.2})",
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.90)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
        h.mean() / 1000.0
    )
}

/// Requests/s and latency percentiles (per operation too, for a mix).
fn throughput(out: &mut String, report: &RunReport, per_op: bool) {
    let done: u64 = report.counts.values().sum();
    let secs = report.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "\nthroughput  {:.1} requests/s ({done} in {:.2} s)",
        done as f64 / secs,
        secs
    );
    if !report.overall.is_empty() {
        let _ = writeln!(out, "latency ms  {}", latency_line(&report.overall));
    }
    if per_op {
        for (op, h) in &report.per_op {
            let _ = writeln!(
                out,
                "  {:<9} {}  ({} requests)",
                op.name(),
                latency_line(h),
                h.len()
            );
        }
    }
}

fn stock_lines(out: &mut String, before: &Levels, after: &Levels) {
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
}

fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
