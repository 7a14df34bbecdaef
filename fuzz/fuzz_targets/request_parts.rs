//! Every parser of request parts on arbitrary bytes: none may panic, and
//! whatever one accepts must be within the contract's bounds.
#![no_main]

use flashsale::http::request;
use flashsale::http::request_id::{self, RequestId};
use flashsale::{ProductId, Quantity};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);

    if let Ok(id) = request::product_id(&text) {
        let s = id.as_str();
        assert!(!s.is_empty() && s.len() <= ProductId::MAX_LEN);
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
        );
    }
    if let Ok(order) = request::order_id(&text) {
        // An accepted order id prints as a UUID that parses back to itself.
        assert_eq!(request::order_id(&order.to_string()).ok(), Some(order));
    }
    if let Ok(Some(key)) = request::idempotency_key(Some(data)) {
        assert!(!key.as_str().is_empty() && key.as_str().len() <= 128);
        assert!(
            key.as_str()
                .bytes()
                .all(|b| b.is_ascii_graphic() || b == b' ')
        );
    }
    let _ = request::credentials(Some(data));

    match request::buy_quantity(data) {
        Ok(q) => assert!((1..=Quantity::MAX).contains(&q.get())),
        // A refusal names what to fix.
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty()),
    }
    let product = ProductId::new("fuzz").unwrap();
    match request::sale(&product, data) {
        Ok(sale) => {
            assert_eq!(sale.product(), &product);
            assert!(sale.per_user_limit() >= 1 && sale.per_order_max() >= 1);
        }
        Err(e) => assert!(!e.field.is_empty() && !e.message.is_empty()),
    }

    match RequestId::parse(data) {
        Some(id) => {
            assert_eq!(id.as_str().as_bytes(), data);
            assert!(data.len() <= request_id::MAX_LEN);
        }
        None => assert!(RequestId::from_header(Some(data)).as_str().len() == 36),
    }
});
