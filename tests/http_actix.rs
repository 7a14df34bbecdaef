//! The HTTP contract suite (`tests/common/http_cases/`) against the
//! actix-web adapter, in process through `actix_web::test`.

#[macro_use]
#[path = "common/http_cases/mod.rs"]
mod http_cases;

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;

use actix_web::http::Method;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, test};
use flashsale::http::Api;
use http_cases::{Client, Req, Resp};

/// Sends a test request; `true`: without its `Content-Length` (chunked).
type Send = Box<dyn Fn(test::TestRequest, bool) -> Pin<Box<dyn Future<Output = Resp>>>>;

struct Actix(Send);

impl Client for Actix {
    async fn send(&self, req: Req) -> Resp {
        let mut r = test::TestRequest::default()
            .method(Method::from_bytes(req.method.as_bytes()).unwrap())
            .uri(&req.path);
        for (name, value) in &req.headers {
            r = r.insert_header((*name, HeaderValue::from_bytes(value.as_bytes()).unwrap()));
        }
        (self.0)(r.set_payload(req.body), req.chunked).await
    }
}

async fn client(api: Api) -> Actix {
    let app = Rc::new(
        test::init_service(App::new().configure(flashsale::http::actix::configure(api))).await,
    );
    Actix(Box::new(move |req, chunked| {
        let app = app.clone();
        let mut request = req.to_request();
        if chunked {
            // The test request always declares the payload's length; take
            // it away so that the adapter cannot know the size up front, as
            // with a chunked body on the wire (tests/http_body_limit.rs
            // sends a real one).
            let headers = request.headers_mut();
            headers.remove(header::CONTENT_LENGTH);
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
        }
        Box::pin(async move {
            let response = test::call_service(&*app, request).await;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
                .collect();
            let bytes = test::read_body(response).await;
            Resp {
                status,
                headers,
                body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            }
        })
    }))
}

http_suite!(actix_web::test, client);
