//! `photonctl sign`: the signature headers for one request.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use photondb_proto::signing::{self, AuthFields, BodyDigest, RequestParts, SecretKey, Timestamp};
use zeroize::Zeroizing;

/// What to sign. Shared by `sign` and `request`.
#[derive(Debug, clap::Args)]
pub(super) struct SignArgs {
    /// Private key (PKCS#8 PEM, as written by `photonctl keygen`).
    #[arg(long, value_name = "FILE", env = "PHOTONDB_KEY")]
    pub(super) key: PathBuf,
    /// Your partner id (X-Partner-Id).
    #[arg(long, value_name = "ID", env = "PHOTONDB_PARTNER")]
    pub(super) partner: String,
    /// Ask for this version of your key (X-Key-Version); default: your newest valid key.
    #[arg(long, value_name = "N")]
    pub(super) key_version: Option<u32>,
    /// Request body: `@FILE` reads a file, anything else is used as given.
    #[arg(long, short = 'd', value_name = "DATA")]
    pub(super) data: Option<String>,
    /// Timestamp to sign instead of now (YYYY-MM-DDTHH:MM:SSZ), e.g. to reproduce a vector.
    #[arg(long, value_name = "TIME")]
    pub(super) timestamp: Option<String>,
    /// Request id to sign instead of a fresh random UUID.
    #[arg(long, value_name = "UUID")]
    pub(super) request_id: Option<String>,
    /// HTTP method, e.g. GET, PUT, DELETE, POST.
    pub(super) method: String,
    /// Full URL, e.g. https://localhost:8443/v1/dbs
    pub(super) url: String,
}

/// A request ready to send: everything that was signed, and the headers that carry it.
#[derive(Debug)]
pub(super) struct SignedRequest {
    pub(super) method: String,
    pub(super) uri: http::Uri,
    pub(super) host: String,
    pub(super) body: Vec<u8>,
    pub(super) headers: Vec<(&'static str, String)>,
}

pub(super) fn run(args: &SignArgs) -> anyhow::Result<ExitCode> {
    for (name, value) in build(args)?.headers {
        println!("{}: {value}", display_name(name));
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads the key and body, and signs the request described by `args`.
pub(super) fn build(args: &SignArgs) -> anyhow::Result<SignedRequest> {
    let key = read_key(&args.key)?;
    let uri: http::Uri = args
        .url
        .parse()
        .with_context(|| format!("bad URL {:?}", args.url))?;
    let Some(authority) = uri.authority() else {
        bail!("URL {:?} has no host", args.url)
    };
    if authority.as_str().contains('@') {
        bail!("URL must not carry credentials");
    }
    let body = read_body(args.data.as_deref())?;
    let timestamp = args
        .timestamp
        .clone()
        .unwrap_or_else(|| Timestamp::now().format());
    let request_id = args
        .request_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let fields = AuthFields::new(&args.partner, &request_id, &timestamp)?;
    let method = args.method.to_ascii_uppercase();
    let parts = RequestParts {
        method: &method,
        host: authority.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        body: BodyDigest::of(&body),
    };
    let headers = signing::signature_headers(&key, &parts, &fields, args.key_version)?;
    let host = authority.as_str().to_owned();
    Ok(SignedRequest {
        method,
        uri,
        host,
        body,
        headers,
    })
}

/// A PKCS#8 Ed25519 private key from a PEM file (the text is zeroized once parsed).
pub(super) fn read_key(path: &std::path::Path) -> anyhow::Result<SecretKey> {
    let pem = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading key {}", path.display()))?,
    );
    SecretKey::from_pkcs8_pem(&pem)
        .map_err(|_| anyhow::anyhow!("{} is not a PKCS#8 Ed25519 private key", path.display()))
}

fn read_body(data: Option<&str>) -> anyhow::Result<Vec<u8>> {
    match data {
        None => Ok(Vec::new()),
        Some(text) => match text.strip_prefix('@') {
            Some(file) => std::fs::read(file).with_context(|| format!("reading body from {file}")),
            None => Ok(text.as_bytes().to_vec()),
        },
    }
}

/// `x-partner-id` -> `X-Partner-Id`, as people write headers.
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}
