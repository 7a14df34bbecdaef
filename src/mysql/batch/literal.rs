//! SQL literals for the batch statements: every value is sent as a hex
//! literal with its column's character set, so no value can change a
//! statement.

/// Appends `X'…'`.
pub(super) fn hex(sql: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    sql.reserve(bytes.len() * 2 + 3);
    sql.push_str("X'");
    for b in bytes {
        sql.push(char::from(DIGITS[usize::from(b >> 4)]));
        sql.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    sql.push('\'');
}

/// An ASCII text literal (product ids, states).
pub(super) fn ascii(sql: &mut String, s: &str) {
    sql.push_str("_ascii ");
    hex(sql, s.as_bytes());
}

/// A UTF-8 text literal (user ids, keys, payloads).
pub(super) fn utf8(sql: &mut String, s: &str) {
    sql.push_str("_utf8mb4 ");
    hex(sql, s.as_bytes());
}

/// A number literal.
pub(super) fn num(sql: &mut String, n: u64) {
    use std::fmt::Write as _;
    let _ = write!(sql, "{n}");
}

/// `items` as a comma-separated list, each written by `one`.
pub(super) fn each<T>(sql: &mut String, items: &[T], mut one: impl FnMut(&mut String, &T)) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            sql.push_str(", ");
        }
        one(sql, item);
    }
}
