//! Pipeline step 13's output: an [`Answer`] (status, headers, body, optional gRPC trailers)
//! and the two renderings of a [`Refusal`]: problem+json (RFC 9457) and gRPC status.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::json;

use crate::errors::Refusal;

/// A complete response, written by the edge.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
    /// gRPC responses end with trailers (`grpc-status`).
    pub trailers: Option<HeaderMap>,
}

impl Answer {
    /// A JSON body: a `serde_json::Value`, or a type that embeds stored JSON as it is.
    pub fn json(status: StatusCode, value: &impl Serialize) -> Self {
        let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body,
            trailers: None,
        }
    }

    /// No body.
    pub fn empty(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
            trailers: None,
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_headers(mut self, headers: Vec<(&'static str, String)>) -> Self {
        self.headers.extend(headers);
        self
    }

    /// An RFC 9457 problem document for a REST client.
    pub fn problem(refusal: &Refusal, request_id: &str) -> Self {
        let d = refusal.describe();
        let mut body = json!({
            "type": format!("urn:photondb:problem:{}", d.code),
            "title": d.title,
            "status": d.status.as_u16(),
            "code": d.code,
            "request_id": request_id,
        });
        if let Some(detail) = refusal.detail() {
            body["detail"] = detail.into();
        }
        let body = Bytes::from(serde_json::to_vec(&body).unwrap_or_default());
        let mut headers = vec![("content-type", "application/problem+json".to_string())];
        headers.extend(refusal.headers());
        Self {
            status: d.status,
            headers,
            body,
            trailers: None,
        }
    }

    /// A successful gRPC response: one framed message, then `grpc-status: 0`.
    pub fn grpc_ok(message: Bytes) -> Self {
        Self {
            status: StatusCode::OK,
            headers: grpc_headers(),
            body: message,
            trailers: Some(grpc_trailers(0, None)),
        }
    }

    /// A gRPC refusal: HTTP 200, no message, the status and stable code in the trailers.
    pub fn grpc_refusal(refusal: &Refusal) -> Self {
        let d = refusal.describe();
        let trailers = grpc_trailers(d.grpc as i32, Some(d.code));
        Self {
            status: StatusCode::OK,
            headers: grpc_headers(),
            body: Bytes::new(),
            trailers: Some(trailers),
        }
    }
}

fn grpc_headers() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/grpc".into())]
}

fn grpc_trailers(status: i32, message: Option<&'static str>) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(status));
    if let Some(m) = message {
        t.insert("grpc-message", HeaderValue::from_static(m));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_json_carries_code_and_request_id() {
        let a = Answer::problem(&Refusal::MethodNotAllowed("GET"), "rid-1");
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        let v: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
        assert_eq!(v["code"], "method_not_allowed");
        assert_eq!(v["request_id"], "rid-1");
        assert_eq!(v["status"], 405);
        assert!(a.headers.contains(&("allow", "GET".into())));
    }
}
