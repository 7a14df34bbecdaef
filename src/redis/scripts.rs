//! The Lua scripts of the stock store, embedded at compile time from
//! `backends/redis/`, each prefixed by the shared helpers of `holds.lua`.

use std::sync::LazyLock;

use ::redis::Script;

/// Builds a script from `holds.lua` (the shared helpers) followed by `$file`.
macro_rules! with_holds {
    ($file:literal) => {
        concat!(
            include_str!("../../backends/redis/holds.lua"),
            include_str!(concat!("../../backends/redis/", $file))
        )
    };
}

/// The reserve script as the server runs it (helpers included).
const RESERVE_SOURCE: &str = with_holds!("reserve.lua");

pub(super) static CREATE_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/create_sale.lua")));
pub(super) static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(RESERVE_SOURCE));
pub(super) static CONFIRM: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_holds!("confirm.lua")));
pub(super) static CANCEL: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_holds!("cancel.lua")));
pub(super) static VOID: LazyLock<Script> = LazyLock::new(|| Script::new(with_holds!("void.lua")));
pub(super) static EXPIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_holds!("expire.lua")));
pub(super) static CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/claim.lua")));
pub(super) static ACK: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("../../backends/redis/ack.lua")));
pub(super) static PROBE: LazyLock<Script> = LazyLock::new(|| Script::new(with_holds!("probe.lua")));
