//! The request line and headers as the server adapter read them: the pipeline's view of a
//! request, free of any server's types.

use http::{HeaderMap, Method, Uri};
use photondb_proto::signing::HEADER_REQUEST_ID;

/// One request's head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// `:authority` (HTTP/2, absolute-form targets) or `Host`, as sent; empty when neither.
    pub host: String,
    pub headers: HeaderMap,
    pub http2: bool,
    /// Bytes of the request target, counted against the header size limit.
    pub target_len: usize,
    /// The target carried a `#fragment` (which URI parsing drops): not normal form
    /// (DESIGN §3.3), so refused rather than silently served without it.
    pub fragment: bool,
}

impl RequestHead {
    pub fn new(method: Method, uri: &Uri, headers: HeaderMap, http2: bool) -> Self {
        let host = uri.authority().map(|a| a.as_str().to_owned());
        let host = host.or_else(|| {
            let h = headers.get(http::header::HOST)?.to_str().ok()?;
            Some(h.to_owned())
        });
        Self {
            method,
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            host: host.unwrap_or_default(),
            headers,
            http2,
            target_len: uri.path_and_query().map_or(0, |p| p.as_str().len()),
            fragment: false,
        }
    }

    /// A header's value, if present and visible ASCII.
    pub fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name)?.to_str().ok()
    }

    /// gRPC needs HTTP/2 (trailers); over HTTP/1 such a request is routed as REST (404).
    pub fn is_grpc(&self) -> bool {
        self.http2 && crate::grpc::is_grpc(self.header(http::header::CONTENT_TYPE))
    }

    /// The client's `X-Request-Id` if it is a UUID, else a new one.
    pub fn request_id(&self) -> String {
        let given = self
            .headers
            .get(HEADER_REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| uuid::Uuid::parse_str(v).ok());
        given
            .unwrap_or_else(uuid::Uuid::new_v4)
            .hyphenated()
            .to_string()
    }

    /// Header count and bytes (name, value and separators) plus the target.
    pub fn size(&self) -> (usize, usize) {
        let bytes: usize = self
            .headers
            .iter()
            .map(|(n, v)| n.as_str().len() + v.len() + 4)
            .sum();
        (self.headers.len(), bytes + self.target_len)
    }
}
