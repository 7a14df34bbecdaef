//! `<count>/<period>` quota strings: no panic, and what parses prints back
//! to a string that parses to the same quota.
#![no_main]

use flashsale::RateQuota;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(q) = text.parse::<RateQuota>() {
        assert!(q.count() >= 1 && !q.period().is_zero());
        let again: RateQuota = q.to_string().parse().expect("a printed quota parses");
        assert_eq!((again.count(), again.period()), (q.count(), q.period()));
    }
});
