//! The hasher for the crate's in-process maps.
//!
//! `std`'s SipHash was a fifth of the instructions of an in-memory purchase.
//! `foldhash` is several times faster and still seeded at random per
//! process, so keys an attacker chooses (product ids from URLs, idempotency
//! keys) cannot be crafted to collide.

/// A randomly seeded fast hasher.
pub(crate) type RandomState = foldhash::fast::RandomState;

/// A `HashMap` with the fast hasher.
pub(crate) type HashMap<K, V> = std::collections::HashMap<K, V, RandomState>;

/// A `HashSet` with the fast hasher.
pub(crate) type HashSet<T> = std::collections::HashSet<T, RandomState>;
