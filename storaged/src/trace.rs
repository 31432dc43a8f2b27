//! The tracing span of each HTTP/2 request, carrying the gateway's request id.

pub fn span<B>(req: &http::Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get(photondb_proto::metadata::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("grpc", path = %req.uri().path(), request_id = %request_id)
}
