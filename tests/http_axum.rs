//! The HTTP contract suite (`tests/common/http_cases/`) against the axum
//! adapter, in process through `tower::ServiceExt::oneshot`.

#[macro_use]
#[path = "common/http_cases/mod.rs"]
mod http_cases;

use axum::body::Body;
use axum::http::{HeaderValue, Request};
use flashsale::http::Api;
use http_body_util::BodyExt;
use http_cases::{Client, Req, Resp};
use tower::ServiceExt;

struct Axum(axum::Router);

impl Client for Axum {
    async fn send(&self, req: Req) -> Resp {
        let mut builder = Request::builder().method(req.method).uri(&req.path);
        for (name, value) in &req.headers {
            builder = builder.header(*name, HeaderValue::from_bytes(value.as_bytes()).unwrap());
        }
        let body = if req.chunked {
            // A stream of small chunks with no size hint: the adapter only
            // learns the size by reading.
            let chunks: Vec<Result<Vec<u8>, std::convert::Infallible>> =
                req.body.chunks(512).map(|c| Ok(c.to_vec())).collect();
            Body::from_stream(futures::stream::iter(chunks))
        } else {
            Body::from(req.body)
        };
        let request = builder.body(body).unwrap();
        let response = self.0.clone().oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap().to_owned()))
            .collect();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
        }
    }
}

async fn client(api: Api) -> Axum {
    Axum(flashsale::http::axum::router(api))
}

http_suite!(tokio::test, client);
