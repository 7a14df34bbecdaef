//! The mixed workload's invariant checks: the stock levels before and after
//! the run against the order book's tally and the restocks, and the order
//! book's own findings. Each check is one line, `OK: <why>` or a list of
//! problems.

use crate::Levels;
use crate::book::{Book, Findings, Tally};

/// One named check's verdict.
pub struct Check {
    pub name: &'static str,
    pub verdict: Result<String, Vec<String>>,
}

impl Check {
    pub fn passed(&self) -> bool {
        self.verdict.is_ok()
    }
}

/// What the run's restocks did, as the admin answers showed.
#[derive(Debug, Clone, Default)]
pub struct Restocks {
    /// Restocks answered `200`.
    pub done: u64,
    /// Units they added.
    pub units: u64,
    /// Answers whose stock was not the one asked for.
    pub findings: Findings,
    /// Restocks with an unexpected answer (the stock may or may not have
    /// changed).
    pub unknown: u64,
    /// Units one restock adds.
    pub step: u64,
}

impl Restocks {
    /// Units that restocks with an unknown outcome may have added.
    fn maybe_added(&self) -> u64 {
        self.unknown * self.step
    }
}

/// The checks that need the stock levels. `before` is read before the
/// first request, `after` once every request has been answered and the
/// holds the run left open are settled (so `tally` has no hold that may
/// have expired unseen).
///
/// Holds that were already there before the run may expire during it, so
/// when `before.held > 0` the unit counts are checked within that margin;
/// on a sale with no holds before the run they are exact. Like the plain
/// load test, this assumes nobody else changes the product meanwhile.
pub fn stock_checks(before: &Levels, after: &Levels, t: &Tally, r: &Restocks) -> Vec<Check> {
    let mut checks = Vec::new();

    // 1. The levels add up.
    let sum = after.available + after.held + after.sold;
    checks.push(Check {
        name: "levels",
        verdict: if sum == after.total {
            Ok(format!(
                "total {} = available {} + held {} + sold {}",
                after.total, after.available, after.held, after.sold
            ))
        } else {
            Err(vec![format!(
                "available {} + held {} + sold {} = {sum}, but total = {}",
                after.available, after.held, after.sold, after.total
            )])
        },
    });

    // 2. No oversell: the units this run's answers say it owns fit in what
    //    could have been on sale (from the answers alone), and the server
    //    never has more held and sold than its total.
    let ours = t.held + t.confirmed;
    let could_be_on_sale = before.available + before.held + r.units + r.maybe_added();
    let mut problems = Vec::new();
    if ours > could_be_on_sale {
        problems.push(format!(
            "OVERSOLD: the answers give this run {ours} units (held + confirmed), but at most \
             {could_be_on_sale} were ever on sale (available {} + held {} before the run + \
             {} restocked)",
            before.available, before.held, r.units
        ));
    }
    if after.held + after.sold > after.total {
        problems.push(format!(
            "OVERSOLD: held {} + sold {} > total {}",
            after.held, after.sold, after.total
        ));
    }
    checks.push(Check {
        name: "oversell",
        verdict: if problems.is_empty() {
            Ok(format!(
                "this run owns {ours} units <= {could_be_on_sale} ever on sale; held + sold {} \
                 <= total {}",
                after.held + after.sold,
                after.total
            ))
        } else {
            Err(problems)
        },
    });

    // 3. Units: held + sold moved by exactly what the answers say.
    let delta = (after.held + after.sold) as i128 - (before.held + before.sold) as i128;
    let expected = ours as i128;
    // Earlier holds may expire; orders whose fate is unknown may be either.
    let low = expected - before.held as i128 - t.uncertain as i128;
    let sold_delta = after.sold as i128 - before.sold as i128;
    let sold_low = t.confirmed as i128;
    let sold_high = sold_low + t.uncertain as i128;
    let mut problems = Vec::new();
    if delta < low || delta > expected {
        problems.push(format!(
            "held + sold changed by {delta:+}, but the answers say {expected:+} (accepted {} \
             - cancelled {} - expired {}){}",
            t.units,
            t.cancelled,
            t.expired,
            margin_note(before.held, t.uncertain)
        ));
    }
    if sold_delta < sold_low || sold_delta > sold_high {
        problems.push(format!(
            "sold changed by {sold_delta:+}, but this run's confirmed orders hold {sold_low} \
             units{}",
            margin_note(0, t.uncertain)
        ));
    }
    checks.push(Check {
        name: "units",
        verdict: if problems.is_empty() {
            Ok(format!(
                "held + sold changed by {delta:+} = accepted {} - cancelled {} - expired {}{}; \
                 sold by {sold_delta:+} = confirmed {}",
                t.units,
                t.cancelled,
                t.expired,
                margin_note(before.held, t.uncertain),
                t.confirmed
            ))
        } else {
            Err(problems)
        },
    });

    // 4. Restocks: the total moved by exactly the units added.
    let total_delta = after.total as i128 - before.total as i128;
    let mut problems = r.findings.lines();
    let exact = r.unknown == 0;
    if total_delta < r.units as i128 || total_delta > (r.units + r.maybe_added()) as i128 {
        problems.push(format!(
            "total changed by {total_delta:+}, but {} restock(s) added {}",
            r.done, r.units
        ));
    }
    checks.push(Check {
        name: "restock",
        verdict: if problems.is_empty() {
            Ok(format!(
                "total changed by {total_delta:+} = {} restock(s) of {} units in all{}",
                r.done,
                r.units,
                if exact {
                    String::new()
                } else {
                    format!(" (+ {} restock(s) with unknown outcome)", r.unknown)
                }
            ))
        } else {
            Err(problems)
        },
    });
    checks
}

fn margin_note(earlier_holds: u64, uncertain: u64) -> String {
    match (earlier_holds, uncertain) {
        (0, 0) => String::new(),
        (h, 0) => format!(" (less up to {h} units of holds from before the run)"),
        (0, u) => format!(" (within {u} units of orders whose fate is unknown)"),
        (h, u) => format!(
            " (less up to {h} units of holds from before the run, within {u} units of orders \
             whose fate is unknown)"
        ),
    }
}

/// The checks of what the answers themselves show.
pub fn book_checks(b: &Book, cap: u64, replays_sent: bool) -> Vec<Check> {
    let findings = |f: &Findings| f.lines();
    let mut checks = Vec::new();
    let mut problems = findings(&b.replay_mismatch);
    problems.extend(findings(&b.doubled));
    checks.push(Check {
        name: "replays",
        verdict: if problems.is_empty() {
            Ok(format!(
                "{} replays answered their own order{}; no fresh key answered a known order",
                b.replays_matched,
                if replays_sent {
                    ""
                } else {
                    " (none in the mix)"
                }
            ))
        } else {
            Err(problems)
        },
    });
    checks.push(Check {
        name: "user cap",
        verdict: if b.over_cap.is_empty() {
            Ok(format!(
                "no user owned more than the cap of {cap} units as far as the answers show \
                 (most seen: {})",
                b.max_user_units
            ))
        } else {
            Err(findings(&b.over_cap))
        },
    });
    checks.push(Check {
        name: "states",
        verdict: if b.contradictions.is_empty() {
            Ok(
                "every order was confirmed or cancelled only when asked, expired only after \
                its hold, and never left a final state"
                    .into(),
            )
        } else {
            Err(findings(&b.contradictions))
        },
    });
    checks
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

    fn failed(checks: &[Check]) -> Vec<&'static str> {
        checks
            .iter()
            .filter(|c| !c.passed())
            .map(|c| c.name)
            .collect()
    }

    /// 100 units; the run placed 60 (10 confirmed, 5 cancelled, 15 expired,
    /// 30 still held) and restocked 20.
    fn tally() -> Tally {
        Tally {
            orders: 60,
            units: 60,
            held: 30,
            confirmed: 10,
            cancelled: 5,
            expired: 15,
            ..Tally::default()
        }
    }

    fn restocks(units: u64) -> Restocks {
        Restocks {
            done: 2,
            units,
            ..Restocks::default()
        }
    }

    #[test]
    fn a_consistent_run_passes() {
        let before = levels(100, 100, 0, 0);
        let after = levels(120, 80, 30, 10);
        let checks = stock_checks(&before, &after, &tally(), &restocks(20));
        assert!(failed(&checks).is_empty(), "{:?}", failed(&checks));
    }

    #[test]
    fn units_taken_without_an_answer_fail_the_units_check() {
        let before = levels(100, 100, 0, 0);
        let after = levels(120, 79, 31, 10);
        let checks = stock_checks(&before, &after, &tally(), &restocks(20));
        assert_eq!(failed(&checks), ["units"]);
    }

    #[test]
    fn more_owned_than_ever_on_sale_is_oversold() {
        let before = levels(100, 20, 0, 80);
        let after = levels(100, 0, 30, 70);
        let checks = stock_checks(&before, &after, &tally(), &restocks(0));
        assert!(
            failed(&checks).contains(&"oversell"),
            "{:?}",
            failed(&checks)
        );
    }

    #[test]
    fn a_restock_that_did_not_land_fails() {
        let before = levels(100, 100, 0, 0);
        let after = levels(110, 70, 30, 10);
        let checks = stock_checks(&before, &after, &tally(), &restocks(20));
        assert_eq!(failed(&checks), ["restock"]);
    }

    #[test]
    fn earlier_holds_widen_the_units_check_only_downwards() {
        let before = levels(100, 90, 10, 0);
        // The 10 earlier held units expired during the run.
        let after = levels(120, 80, 30, 10);
        assert!(failed(&stock_checks(&before, &after, &tally(), &restocks(20))).is_empty());
        // They are still held.
        let after = levels(120, 70, 40, 10);
        assert!(failed(&stock_checks(&before, &after, &tally(), &restocks(20))).is_empty());
        // More than that is not explained.
        let after = levels(120, 69, 41, 10);
        assert_eq!(
            failed(&stock_checks(&before, &after, &tally(), &restocks(20))),
            ["units"]
        );
    }

    #[test]
    fn levels_that_do_not_add_up_fail() {
        let before = levels(100, 100, 0, 0);
        let after = levels(120, 81, 30, 10);
        assert!(
            failed(&stock_checks(&before, &after, &tally(), &restocks(20))).contains(&"levels")
        );
    }
}
