//! A sale's terms and its live stock levels.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{InvalidInput, ProductId, Quantity, Timestamp};

/// The terms of one flash sale: how many units, when, and how many per buyer.
///
/// Built with [`Sale::builder`], which validates every field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "SaleFields", into = "SaleFields")]
pub struct Sale {
    product: ProductId,
    stock: u32,
    per_user_limit: u32,
    per_order_max: u32,
    starts_at: Option<Timestamp>,
    ends_at: Option<Timestamp>,
    hold: Option<Duration>,
}

impl Sale {
    /// The most units one sale may hold.
    pub const MAX_STOCK: u32 = 1_000_000_000;
    /// The longest hold a sale may ask for (one day).
    pub const MAX_HOLD: Duration = Duration::from_secs(86_400);

    /// Starts building a sale of `stock` units of `product`. By default there
    /// is no per-user cap beyond the stock, no per-order maximum beyond
    /// [`Quantity::MAX`], no window (always on sale) and no hold (purchases
    /// are final at once).
    pub fn builder(product: ProductId, stock: u32) -> SaleBuilder {
        SaleBuilder {
            sale: Sale {
                product,
                stock,
                per_user_limit: u32::MAX,
                per_order_max: Quantity::MAX,
                starts_at: None,
                ends_at: None,
                hold: None,
            },
        }
    }

    /// The product on sale.
    pub fn product(&self) -> &ProductId {
        &self.product
    }
    /// Total units offered.
    pub fn stock(&self) -> u32 {
        self.stock
    }
    /// Most units one buyer may hold and own together (`u32::MAX`: no cap).
    pub fn per_user_limit(&self) -> u32 {
        self.per_user_limit
    }
    /// Most units one order may ask for.
    pub fn per_order_max(&self) -> u32 {
        self.per_order_max
    }
    /// When the sale opens (`None`: already open).
    pub fn starts_at(&self) -> Option<Timestamp> {
        self.starts_at
    }
    /// When the sale closes, exclusive (`None`: never).
    pub fn ends_at(&self) -> Option<Timestamp> {
        self.ends_at
    }
    /// How long a purchase is held awaiting confirmation (`None`: purchases
    /// are final at once).
    pub fn hold(&self) -> Option<Duration> {
        self.hold
    }

    /// Whether the sale is open at `now`: `starts_at <= now < ends_at`.
    pub fn is_open(&self, now: Timestamp) -> bool {
        self.starts_at.is_none_or(|s| now >= s) && self.ends_at.is_none_or(|e| now < e)
    }

    /// Checks `quantity` against the per-order maximum.
    pub fn check_quantity(&self, quantity: Quantity) -> Result<(), InvalidInput> {
        if quantity.get() > self.per_order_max {
            return Err(InvalidInput::new(
                "quantity",
                format!(
                    "{} is above this sale's per-order maximum of {}",
                    quantity, self.per_order_max
                ),
            ));
        }
        Ok(())
    }
}

/// Builder for [`Sale`]; [`SaleBuilder::build`] validates.
#[derive(Debug, Clone)]
#[must_use]
pub struct SaleBuilder {
    sale: Sale,
}

impl SaleBuilder {
    /// Most units one buyer may hold and own together.
    pub fn per_user_limit(mut self, n: u32) -> Self {
        self.sale.per_user_limit = n;
        self
    }
    /// Most units one order may ask for.
    pub fn per_order_max(mut self, n: u32) -> Self {
        self.sale.per_order_max = n;
        self
    }
    /// When the sale opens.
    pub fn starts_at(mut self, t: Timestamp) -> Self {
        self.sale.starts_at = Some(t);
        self
    }
    /// When the sale closes (exclusive).
    pub fn ends_at(mut self, t: Timestamp) -> Self {
        self.sale.ends_at = Some(t);
        self
    }
    /// Hold each purchase for `d` awaiting confirmation; unconfirmed holds
    /// are released when `d` has passed.
    pub fn hold(mut self, d: Duration) -> Self {
        self.sale.hold = Some(d);
        self
    }

    /// Validates and returns the sale.
    pub fn build(self) -> Result<Sale, InvalidInput> {
        let s = self.sale;
        if s.stock > Sale::MAX_STOCK {
            return Err(InvalidInput::new(
                "stock",
                format!("must be at most {}", Sale::MAX_STOCK),
            ));
        }
        if s.per_user_limit == 0 {
            return Err(InvalidInput::new("per_user_limit", "must be at least 1"));
        }
        if s.per_order_max == 0 || s.per_order_max > Quantity::MAX {
            return Err(InvalidInput::new(
                "per_order_max",
                format!("must be between 1 and {}", Quantity::MAX),
            ));
        }
        if let (Some(start), Some(end)) = (s.starts_at, s.ends_at)
            && end <= start
        {
            return Err(InvalidInput::new("ends_at", "must be after starts_at"));
        }
        if let Some(h) = s.hold
            && (h < Duration::from_secs(1) || h > Sale::MAX_HOLD)
        {
            return Err(InvalidInput::new(
                "hold_seconds",
                "must be between 1 second and 1 day",
            ));
        }
        Ok(s)
    }
}

/// The wire form of a [`Sale`] (the admin API's JSON body uses the same
/// names).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaleFields {
    product_id: ProductId,
    stock: u32,
    per_user_limit: u32,
    per_order_max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    starts_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ends_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hold_seconds: Option<u64>,
}

impl TryFrom<SaleFields> for Sale {
    type Error = InvalidInput;
    fn try_from(f: SaleFields) -> Result<Self, InvalidInput> {
        let mut b = Sale::builder(f.product_id, f.stock)
            .per_user_limit(f.per_user_limit)
            .per_order_max(f.per_order_max);
        if let Some(t) = f.starts_at {
            b = b.starts_at(t);
        }
        if let Some(t) = f.ends_at {
            b = b.ends_at(t);
        }
        if let Some(h) = f.hold_seconds {
            b = b.hold(Duration::from_secs(h));
        }
        b.build()
    }
}

impl From<Sale> for SaleFields {
    fn from(s: Sale) -> Self {
        SaleFields {
            product_id: s.product,
            stock: s.stock,
            per_user_limit: s.per_user_limit,
            per_order_max: s.per_order_max,
            starts_at: s.starts_at,
            ends_at: s.ends_at,
            hold_seconds: s.hold.map(|d| d.as_secs()),
        }
    }
}

/// A product's live stock levels. Every backend keeps
/// `total == available + held + committed` true at every moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StockLevels {
    /// Units offered in all.
    pub total: u64,
    /// Units nobody holds or owns.
    pub available: u64,
    /// Units reserved and not yet committed, released or expired.
    pub held: u64,
    /// Units sold for good.
    pub committed: u64,
}

impl StockLevels {
    /// Whether `total == available + held + committed`.
    pub fn is_consistent(&self) -> bool {
        self.available
            .checked_add(self.held)
            .and_then(|s| s.checked_add(self.committed))
            == Some(self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> ProductId {
        ProductId::new("p").unwrap()
    }

    #[test]
    fn builder_rejects_inconsistent_terms() {
        let t = Timestamp::from_millis(10_000);
        let cases = [
            (Sale::builder(p(), Sale::MAX_STOCK + 1), "stock"),
            (Sale::builder(p(), 1).per_user_limit(0), "per_user_limit"),
            (Sale::builder(p(), 1).per_order_max(0), "per_order_max"),
            (Sale::builder(p(), 1).starts_at(t).ends_at(t), "ends_at"),
            (
                Sale::builder(p(), 1).hold(Duration::from_millis(10)),
                "hold_seconds",
            ),
            (
                Sale::builder(p(), 1).hold(Duration::from_secs(86_401)),
                "hold_seconds",
            ),
        ];
        for (builder, field) in cases {
            assert_eq!(builder.build().unwrap_err().field, field);
        }
    }

    #[test]
    fn window_is_half_open() {
        let s = Sale::builder(p(), 1)
            .starts_at(Timestamp::from_millis(100))
            .ends_at(Timestamp::from_millis(200))
            .build()
            .unwrap();
        assert!(!s.is_open(Timestamp::from_millis(99)));
        assert!(s.is_open(Timestamp::from_millis(100)));
        assert!(s.is_open(Timestamp::from_millis(199)));
        assert!(!s.is_open(Timestamp::from_millis(200)));
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let s = Sale::builder(p(), 5)
            .per_user_limit(2)
            .hold(Duration::from_secs(300))
            .build()
            .unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["hold_seconds"], 300);
        assert_eq!(serde_json::from_value::<Sale>(json).unwrap(), s);
        let bad = serde_json::json!({"product_id": "p", "stock": 5, "per_user_limit": 0, "per_order_max": 1});
        assert!(serde_json::from_value::<Sale>(bad).is_err());
    }

    #[test]
    fn levels_consistency_detects_overflow_and_mismatch() {
        let ok = StockLevels {
            total: 10,
            available: 5,
            held: 2,
            committed: 3,
        };
        assert!(ok.is_consistent());
        assert!(!StockLevels { available: 6, ..ok }.is_consistent());
        let huge = StockLevels {
            total: 1,
            available: u64::MAX,
            held: 2,
            committed: 0,
        };
        assert!(!huge.is_consistent());
    }
}
