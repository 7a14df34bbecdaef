//! `--mix`: which operations the load test sends and in what proportion,
//! the order it sends them in, and the small random source that picks
//! which earlier order a replay, confirm or cancel acts on.

use std::fmt;

/// One kind of request of the mixed workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// `POST /buy/{product}` with a fresh `Idempotency-Key`.
    Buy,
    /// An earlier purchase sent again: same user, key and body.
    Replay,
    /// `POST /orders/{order}/confirm` of one of this run's holds.
    Confirm,
    /// `POST /orders/{order}/cancel` of one of this run's holds.
    Cancel,
    /// `PUT /admin/products/{product}` with more stock.
    Restock,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Buy, Op::Replay, Op::Confirm, Op::Cancel, Op::Restock];

    pub fn name(self) -> &'static str {
        match self {
            Op::Buy => "buy",
            Op::Replay => "replay",
            Op::Confirm => "confirm",
            Op::Cancel => "cancel",
            Op::Restock => "restock",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Relative weights of the operations, e.g. `buy=70,replay=10,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 5],
}

impl Mix {
    /// Parses `name=weight[,name=weight...]`. Weights are relative whole
    /// numbers (they need not add up to 100); operations left out get 0.
    pub fn parse(spec: &str) -> Result<Mix, String> {
        let mut weights = [0u32; 5];
        let mut seen = [false; 5];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix: {part:?} is not name=weight"))?;
            let op = Op::ALL
                .into_iter()
                .find(|op| op.name() == name.trim())
                .ok_or_else(|| {
                    format!(
                        "--mix: unknown operation {:?} (buy, replay, confirm, cancel, restock)",
                        name.trim()
                    )
                })?;
            let weight: u32 = match weight.trim().parse() {
                Ok(w) if w <= 1_000_000 => w,
                _ => {
                    return Err(format!(
                        "--mix: the weight of {} must be a whole number from 0 to 1000000, \
                         not {weight:?}",
                        op.name()
                    ));
                }
            };
            if std::mem::replace(&mut seen[op.index()], true) {
                return Err(format!("--mix: {} is given twice", op.name()));
            }
            weights[op.index()] = weight;
        }
        let mix = Mix { weights };
        if weights.iter().all(|w| *w == 0) {
            return Err("--mix: at least one weight must be above 0".into());
        }
        if mix.weight(Op::Buy) == 0
            && [Op::Replay, Op::Confirm, Op::Cancel]
                .into_iter()
                .any(|op| mix.has(op))
        {
            return Err(
                "--mix: replay, confirm and cancel act on this run's purchases, so buy must be \
                 above 0"
                    .into(),
            );
        }
        Ok(mix)
    }

    pub fn weight(&self, op: Op) -> u32 {
        self.weights[op.index()]
    }

    pub fn has(&self, op: Op) -> bool {
        self.weight(op) > 0
    }

    /// The operations in the order to send them.
    pub fn picker(&self) -> Picker {
        Picker {
            weights: self.weights.map(i64::from),
            current: [0; 5],
            total: self.weights.iter().map(|w| i64::from(*w)).sum(),
        }
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for op in Op::ALL.into_iter().filter(|op| self.has(*op)) {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{}={}", op.name(), self.weight(op))?;
        }
        Ok(())
    }
}

/// Smooth weighted round-robin: every run of `total` picks holds each
/// operation exactly its weight's number of times, spread evenly rather
/// than in blocks, and the sequence is the same on every run.
#[derive(Debug, Clone)]
pub struct Picker {
    weights: [i64; 5],
    current: [i64; 5],
    total: i64,
}

impl Picker {
    pub fn next_op(&mut self) -> Op {
        let mut best = 0;
        for i in 0..5 {
            self.current[i] += self.weights[i];
            if self.current[i] > self.current[best] {
                best = i;
            }
        }
        self.current[best] -= self.total;
        Op::ALL[best]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_parses_and_prints_back() {
        let mix = Mix::parse("buy=70, replay=10,confirm=8,cancel=7,restock=5").unwrap();
        assert_eq!(mix.weight(Op::Buy), 70);
        assert_eq!(mix.weight(Op::Restock), 5);
        assert_eq!(
            mix.to_string(),
            "buy=70,replay=10,confirm=8,cancel=7,restock=5"
        );
        let only = Mix::parse("buy=1").unwrap();
        assert!(!only.has(Op::Replay));
        assert_eq!(only.to_string(), "buy=1");
    }

    #[test]
    fn bad_specs_are_refused() {
        for bad in [
            "",
            "buy",
            "buy=x",
            "buy=-1",
            "sell=1",
            "buy=1,buy=2",
            "buy=0",
            "replay=5",
            "buy=2000000",
        ] {
            assert!(Mix::parse(bad).is_err(), "{bad:?} was accepted");
        }
        // A restock-only run needs no purchases.
        assert!(Mix::parse("restock=1").is_ok());
    }

    #[test]
    fn the_picker_keeps_the_exact_proportions_spread_out() {
        let mix = Mix::parse("buy=70,replay=10,confirm=8,cancel=7,restock=5").unwrap();
        let mut p = mix.picker();
        let ops: Vec<Op> = (0..200).map(|_| p.next_op()).collect();
        for op in Op::ALL {
            let n = ops.iter().filter(|o| **o == op).count() as u32;
            assert_eq!(n, 2 * mix.weight(op), "{op:?}");
        }
        // Spread out: never more than a handful of non-buys in a row.
        let longest = ops.split(|o| *o == Op::Buy).map(<[Op]>::len).max().unwrap();
        assert!(longest <= 2, "{ops:?}");
    }
}
