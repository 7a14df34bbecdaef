//! JWT verification on arbitrary tokens. Without the secret no token may be
//! accepted; a valid token changed in any way may be accepted only if it
//! still says exactly what the signed one said.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use flashsale::jwt::{Claims, JwtAuthenticator, sign_hs256};
use flashsale::{Principal, UserId};
use flashsale::{ManualClock, Timestamp};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-0123456789";
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

struct Fixture {
    auth: JwtAuthenticator,
    token: String,
    principal: Principal,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let clock = std::sync::Arc::new(ManualClock::new(NOW));
        let auth = JwtAuthenticator::hs256(SECRET).with_clock(clock);
        let user = UserId::new("fuzz-buyer").unwrap();
        let claims = Claims::new(&user, NOW, Duration::from_secs(600));
        let token = sign_hs256(SECRET, &claims).unwrap();
        let principal = auth.verify(&token).expect("the fixture's token is valid");
        Fixture {
            auth,
            token,
            principal,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let token = if mode % 2 == 0 {
        // Any string at all: never signed with the secret.
        String::from_utf8_lossy(rest).into_owned()
    } else {
        // The valid token with bytes spliced in at a chosen place.
        let at = rest
            .first()
            .map_or(0, |&b| usize::from(b) * f.token.len() / 256);
        let mut t = f.token.clone().into_bytes();
        t.splice(
            at..(at + rest.len().min(4)).min(t.len()),
            rest.iter().copied().skip(1),
        );
        String::from_utf8_lossy(&t).into_owned()
    };
    match f.auth.verify(&token) {
        Ok(p) => assert_eq!(p, f.principal, "accepted {token:?} as someone else"),
        Err(_) => {}
    }
});
