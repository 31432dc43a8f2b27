//! Refusals: every way the gateway says no, as small values, with ONE table ([`Refusal::describe`])
//! giving each its HTTP status, stable `code` and gRPC code, and ONE mapping from upstream
//! gRPC status ([`Refusal::from_upstream`]). No upstream or internal text reaches a client.
//! A leaf: each module that has its own error type converts it here with `From`.

use http::StatusCode;
use tonic::Code;

use photondb_proto::names::NameError;

/// Why a request was not answered with success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotFound,
    MethodNotAllowed(&'static str),
    PathNotNormal,
    BadQuery,
    BadName,
    BadKey,
    BadPrecondition,
    HeadersTooLarge,
    /// The request line or headers are malformed or ambiguous (a duplicate `Host`, differing
    /// `Content-Length`s, an absolute-form target naming another host); the connection closes.
    MalformedRequest,
    /// storaged runs one verify at a time (or the running one gave way to a checkpoint).
    VerifyBusy,
    IpRateLimited {
        retry_after_secs: u64,
    },
    PayloadTooLarge,
    ContentEncoding,
    BodyTimeout,
    BadBody,
    UnexpectedBody,
    JsonNotUtf8,
    JsonTooDeep,
    JsonMalformed,
    /// An object repeats a member name: parsers disagree on which one counts.
    JsonDuplicateKey,
    DocumentNotObject,
    BadBatch,
    TooManyOperations,
    GrpcUnknownMethod,
    GrpcCompressed,
    GrpcBadMessage,
    /// `Host` / `:authority` is not one of the configured public host names (DESIGN §3.7).
    HostNotAllowed,
    /// Dev mode refuses requests that came through a proxy (`Forwarded`, `X-Forwarded-For`,
    /// `Via`): a same-host proxy would otherwise expose it.
    DevModeProxied,
    /// Authentication failed; the `code` says which check (DESIGN §3).
    Unauthenticated(&'static str),
    Replayed,
    /// The signed time is outside the window; the answer carries the server's `Date`.
    TimestampOutOfWindow {
        server_date: String,
    },
    /// The replay store cannot be reached: never fail open.
    ReplayStoreUnavailable,
    /// Over the plan's rate (`rate_limited`) or its daily quota (`quota_exhausted`), with the
    /// `RateLimit` / `RateLimit-Policy` headers to send.
    RateLimited {
        code: &'static str,
        retry_after_secs: u64,
        headers: Vec<(&'static str, String)>,
    },
    /// The shared rate-limit store is down and the deployment chose to refuse.
    RateLimitStoreUnavailable,
    /// Policy denied `action` (e.g. `table.write`) on `resource` (e.g. `db:a/table:b`).
    Forbidden {
        action: &'static str,
        resource: String,
    },
    ReadOnly,
    /// The operator's `partners-only` switch: public endpoints are off.
    PublicDisabled,
    /// The operator's `closed` switch: everything but health is off.
    Closed,
    /// The operator suspended this principal.
    PartnerSuspended,
    Overloaded,
    BreakerOpen,
    DocumentNotFound,
    Conflict,
    VersionMismatch,
    UpstreamInvalidArgument,
    DataLoss,
    UpstreamUnavailable,
    UpstreamTimeout,
    Internal,
}

/// How a refusal is presented: HTTP status, stable code, short title, gRPC code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Described {
    pub status: StatusCode,
    pub code: &'static str,
    pub title: &'static str,
    pub grpc: Code,
}

const fn d(status: StatusCode, code: &'static str, title: &'static str, grpc: Code) -> Described {
    Described {
        status,
        code,
        title,
        grpc,
    }
}

impl Refusal {
    /// The one table of refusals.
    pub fn describe(&self) -> Described {
        use StatusCode as S;
        match self {
            Self::NotFound => d(
                S::NOT_FOUND,
                "route_not_found",
                "No such route",
                Code::Unimplemented,
            ),
            Self::MethodNotAllowed(_) => d(
                S::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "Method not allowed",
                Code::Unimplemented,
            ),
            Self::PathNotNormal => d(
                S::BAD_REQUEST,
                "path_not_normal",
                "Path is not in normal form",
                Code::InvalidArgument,
            ),
            Self::BadQuery => d(
                S::BAD_REQUEST,
                "bad_query",
                "Query string is invalid",
                Code::InvalidArgument,
            ),
            Self::BadName => d(
                S::BAD_REQUEST,
                "bad_name",
                "Names are [a-z0-9_-]{1,64}",
                Code::InvalidArgument,
            ),
            Self::BadKey => d(
                S::BAD_REQUEST,
                "bad_key",
                "Keys are 1-512 bytes of UTF-8",
                Code::InvalidArgument,
            ),
            Self::BadPrecondition => d(
                S::BAD_REQUEST,
                "bad_precondition",
                "If-Match / If-None-Match is invalid",
                Code::InvalidArgument,
            ),
            Self::HeadersTooLarge => d(
                S::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "Request headers too large",
                Code::ResourceExhausted,
            ),
            Self::MalformedRequest => d(
                S::BAD_REQUEST,
                "malformed_request",
                "The request line or headers are malformed or ambiguous",
                Code::InvalidArgument,
            ),
            Self::VerifyBusy => d(
                S::CONFLICT,
                "verify_busy",
                "A verify is already running; try again when it has finished",
                Code::FailedPrecondition,
            ),
            Self::IpRateLimited { .. } => d(
                S::TOO_MANY_REQUESTS,
                "ip_rate_limited",
                "Too many requests from this address",
                Code::ResourceExhausted,
            ),
            Self::PayloadTooLarge => d(
                S::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "Request body too large",
                Code::ResourceExhausted,
            ),
            Self::ContentEncoding => d(
                S::UNSUPPORTED_MEDIA_TYPE,
                "content_encoding_refused",
                "Content-Encoding is not accepted",
                Code::Unimplemented,
            ),
            Self::BodyTimeout => d(
                S::REQUEST_TIMEOUT,
                "body_timeout",
                "Request body was not received in time",
                Code::DeadlineExceeded,
            ),
            Self::BadBody => d(
                S::BAD_REQUEST,
                "bad_body",
                "Request body could not be read",
                Code::InvalidArgument,
            ),
            Self::UnexpectedBody => d(
                S::BAD_REQUEST,
                "unexpected_body",
                "This route takes no request body",
                Code::InvalidArgument,
            ),
            Self::JsonNotUtf8 => d(
                S::BAD_REQUEST,
                "json_not_utf8",
                "Body is not UTF-8",
                Code::InvalidArgument,
            ),
            Self::JsonTooDeep => d(
                S::BAD_REQUEST,
                "json_too_deep",
                "JSON nesting too deep",
                Code::InvalidArgument,
            ),
            Self::JsonMalformed => d(
                S::BAD_REQUEST,
                "json_malformed",
                "Body is not well-formed JSON",
                Code::InvalidArgument,
            ),
            Self::JsonDuplicateKey => d(
                S::BAD_REQUEST,
                "json_duplicate_key",
                "A JSON object repeats a member name",
                Code::InvalidArgument,
            ),
            Self::DocumentNotObject => d(
                S::BAD_REQUEST,
                "document_not_object",
                "Documents must be JSON objects",
                Code::InvalidArgument,
            ),
            Self::BadBatch => d(
                S::BAD_REQUEST,
                "bad_batch",
                "Batch body is invalid",
                Code::InvalidArgument,
            ),
            Self::TooManyOperations => d(
                S::BAD_REQUEST,
                "batch_too_large",
                "Too many operations or bytes in one batch",
                Code::InvalidArgument,
            ),
            Self::GrpcUnknownMethod => d(
                S::NOT_FOUND,
                "grpc_unknown_method",
                "No such gRPC method",
                Code::Unimplemented,
            ),
            Self::GrpcCompressed => d(
                S::UNSUPPORTED_MEDIA_TYPE,
                "grpc_compression_refused",
                "Compressed gRPC messages are not accepted",
                Code::Unimplemented,
            ),
            Self::GrpcBadMessage => d(
                S::BAD_REQUEST,
                "grpc_bad_message",
                "gRPC message could not be decoded",
                Code::InvalidArgument,
            ),
            Self::Unauthenticated(code) => d(
                S::UNAUTHORIZED,
                code,
                "Authentication failed",
                Code::Unauthenticated,
            ),
            Self::HostNotAllowed => d(
                S::MISDIRECTED_REQUEST,
                "host_not_allowed",
                "This gateway does not serve that host",
                Code::InvalidArgument,
            ),
            Self::DevModeProxied => d(
                S::FORBIDDEN,
                "dev_mode_proxied",
                "Dev mode refuses proxied requests",
                Code::PermissionDenied,
            ),
            Self::Replayed => d(
                S::UNAUTHORIZED,
                "replayed_request",
                "Request id was already used",
                Code::Unauthenticated,
            ),
            Self::TimestampOutOfWindow { .. } => d(
                S::UNAUTHORIZED,
                "timestamp_out_of_window",
                "Request time is outside the accepted window",
                Code::Unauthenticated,
            ),
            Self::ReplayStoreUnavailable => d(
                S::SERVICE_UNAVAILABLE,
                "replay_store_unavailable",
                "Replay protection is unavailable",
                Code::Unavailable,
            ),
            Self::RateLimited { code, .. } => d(
                S::TOO_MANY_REQUESTS,
                code,
                "Rate limit exceeded",
                Code::ResourceExhausted,
            ),
            Self::RateLimitStoreUnavailable => d(
                S::SERVICE_UNAVAILABLE,
                "rate_limit_store_unavailable",
                "Rate limiting is unavailable",
                Code::Unavailable,
            ),
            Self::Forbidden { .. } => d(
                S::FORBIDDEN,
                "forbidden",
                "Not allowed",
                Code::PermissionDenied,
            ),
            Self::ReadOnly => d(
                S::SERVICE_UNAVAILABLE,
                "read_only",
                "The service is read-only for now",
                Code::Unavailable,
            ),
            Self::PublicDisabled => d(
                S::SERVICE_UNAVAILABLE,
                "public_disabled",
                "Public endpoints are switched off for now",
                Code::Unavailable,
            ),
            Self::Closed => d(
                S::SERVICE_UNAVAILABLE,
                "closed",
                "The service is closed for now",
                Code::Unavailable,
            ),
            Self::PartnerSuspended => d(
                S::FORBIDDEN,
                "partner_suspended",
                "This partner is suspended",
                Code::PermissionDenied,
            ),
            Self::Overloaded => d(
                S::SERVICE_UNAVAILABLE,
                "overloaded",
                "The service is overloaded",
                Code::Unavailable,
            ),
            Self::BreakerOpen => d(
                S::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable",
                Code::Unavailable,
            ),
            Self::DocumentNotFound => d(S::NOT_FOUND, "not_found", "Not found", Code::NotFound),
            Self::Conflict => d(
                S::CONFLICT,
                "already_exists",
                "Already exists",
                Code::AlreadyExists,
            ),
            Self::VersionMismatch => d(
                S::PRECONDITION_FAILED,
                "version_mismatch",
                "Version precondition failed",
                Code::FailedPrecondition,
            ),
            Self::UpstreamInvalidArgument => d(
                S::BAD_REQUEST,
                "invalid_argument",
                "Invalid request",
                Code::InvalidArgument,
            ),
            Self::DataLoss => d(
                S::INTERNAL_SERVER_ERROR,
                "data_loss",
                "Stored data failed an integrity check",
                Code::DataLoss,
            ),
            Self::UpstreamUnavailable => d(
                S::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "Storage is unavailable",
                Code::Unavailable,
            ),
            Self::UpstreamTimeout => d(
                S::GATEWAY_TIMEOUT,
                "storage_timeout",
                "Storage did not answer in time",
                Code::DeadlineExceeded,
            ),
            Self::Internal => d(
                S::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                Code::Internal,
            ),
        }
    }

    /// Gateway-made detail that is safe to show (never upstream text).
    pub fn detail(&self) -> Option<String> {
        match self {
            Self::MethodNotAllowed(allow) => Some(format!("allowed: {allow}")),
            Self::Forbidden { action, resource } => {
                Some(format!("{action} on {resource} is not allowed"))
            }
            _ => None,
        }
    }

    /// Extra response headers the refusal calls for.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Self::MethodNotAllowed(allow) => vec![("allow", (*allow).to_string())],
            Self::IpRateLimited { retry_after_secs } => {
                vec![("retry-after", retry_after_secs.to_string())]
            }
            Self::RateLimited {
                retry_after_secs,
                headers,
                ..
            } => {
                let mut all = vec![("retry-after", retry_after_secs.to_string())];
                all.extend(headers.iter().cloned());
                all
            }
            Self::TimestampOutOfWindow { server_date } => vec![("date", server_date.clone())],
            Self::ReadOnly
            | Self::PublicDisabled
            | Self::Closed
            | Self::Overloaded
            | Self::BreakerOpen
            | Self::ReplayStoreUnavailable
            | Self::RateLimitStoreUnavailable => {
                vec![("retry-after", "1".to_string())]
            }
            _ => Vec::new(),
        }
    }

    /// The one mapping from storaged's gRPC status; its message is never used.
    pub fn from_upstream(code: Code) -> Self {
        match code {
            Code::NotFound => Self::DocumentNotFound,
            Code::AlreadyExists => Self::Conflict,
            Code::FailedPrecondition | Code::Aborted => Self::VersionMismatch,
            Code::InvalidArgument | Code::OutOfRange => Self::UpstreamInvalidArgument,
            Code::DataLoss => Self::DataLoss,
            // storaged at its concurrency limit: overload to shed, not a storaged failure (the
            // circuit breaker must not open for everyone because one client floods).
            Code::ResourceExhausted => Self::Overloaded,
            Code::Unavailable => Self::UpstreamUnavailable,
            Code::DeadlineExceeded | Code::Cancelled => Self::UpstreamTimeout,
            _ => Self::Internal,
        }
    }

    /// Whether the refusal is storaged misbehaving (counted by the circuit breaker).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            Self::UpstreamUnavailable | Self::UpstreamTimeout | Self::Internal
        )
    }
}

impl From<NameError> for Refusal {
    fn from(e: NameError) -> Self {
        match e {
            NameError::BadName => Self::BadName,
            NameError::BadKey => Self::BadKey,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_status_mapping() {
        let cases = [
            (Code::NotFound, 404, "not_found"),
            (Code::AlreadyExists, 409, "already_exists"),
            (Code::FailedPrecondition, 412, "version_mismatch"),
            (Code::InvalidArgument, 400, "invalid_argument"),
            (Code::DataLoss, 500, "data_loss"),
            // Overload to shed, not a storaged failure.
            (Code::ResourceExhausted, 503, "overloaded"),
            (Code::Unavailable, 503, "storage_unavailable"),
            (Code::DeadlineExceeded, 504, "storage_timeout"),
            (Code::Unknown, 500, "internal"),
        ];
        for (code, status, name) in cases {
            let r = Refusal::from_upstream(code);
            let d = r.describe();
            assert_eq!((d.status.as_u16(), d.code), (status, name), "{code:?}");
            let failure = matches!(
                code,
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
            );
            assert_eq!(r.is_upstream_failure(), failure, "{code:?} and the breaker");
        }
    }
}
