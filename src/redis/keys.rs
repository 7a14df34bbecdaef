//! The stock store's key layout (see `docs/backends.md`): every key of one
//! product shares the hash tag `{prefix|product}`, so each script touches
//! one slot; the store-wide keys share the tag `{prefix}`.

use crate::model::{IdempotencyKey, OrderId, ProductId, UserId};

/// The keys under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

/// The keys of one product.
pub(super) struct ProductKeys {
    pub(super) sale: String,
    pub(super) users: String,
    pub(super) res: String,
    pub(super) idem: String,
    pub(super) exp: String,
    pub(super) done: String,
    pub(super) outbox: String,
    pub(super) events: String,
    pub(super) claims: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix.
    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The keys of `product`. The prefix cannot hold `|` nor a product id
    /// `}`, so no two (prefix, product) pairs share a key.
    pub(super) fn product(&self, product: &ProductId) -> ProductKeys {
        let tag = format!("{{{}|{}}}", self.prefix, product);
        ProductKeys {
            sale: format!("{tag}:sale"),
            users: format!("{tag}:users"),
            res: format!("{tag}:res"),
            idem: format!("{tag}:idem"),
            exp: format!("{tag}:exp"),
            done: format!("{tag}:done"),
            outbox: format!("{tag}:outbox"),
            events: format!("{tag}:events"),
            claims: format!("{tag}:claims"),
        }
    }

    /// Every product with a sale (what the cluster's repair pass walks). A
    /// product's tag always holds a `|`, so none of these is a product's key.
    pub(super) fn products(&self) -> String {
        format!("{{{}}}|products", self.prefix)
    }

    /// The products whose outbox may hold events (what the relay visits).
    pub(super) fn pending(&self) -> String {
        format!("{{{}}}|pending", self.prefix)
    }

    /// The products by the time (ms) their next hold expiry or purge is
    /// due (what the sweeper visits).
    pub(super) fn due(&self) -> String {
        format!("{{{}}}|due", self.prefix)
    }

    /// The order → product index of `order`.
    pub(super) fn order(&self, order: &OrderId) -> String {
        format!("{}|order:{}", self.prefix, order)
    }
}

/// The idempotency hash field: `<byte length of user>:<user><key>`, so no
/// (user, key) pair can collide with another.
pub(super) fn idem_field(user: &UserId, key: &IdempotencyKey) -> String {
    format!("{}:{}{}", user.as_str().len(), user, key)
}
