//! `photonctl request`: sign a request, send it over TLS (HTTP/2 or HTTP/1.1 by ALPN) or
//! plain HTTP, and print the answer.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};

use super::sign::{self, SignArgs, SignedRequest};

#[derive(Debug, clap::Args)]
pub(super) struct RequestArgs {
    #[command(flatten)]
    sign: SignArgs,
    /// CA certificate (PEM) to trust for an https:// URL, e.g. certs/ca.pem.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Extra request header `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    headers: Vec<String>,
    /// Use HTTP/1.1 even if the server offers HTTP/2.
    #[arg(long)]
    http1: bool,
}

pub(super) fn run(args: &RequestArgs) -> anyhow::Result<ExitCode> {
    let signed = sign::build(&args.sign)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let response = runtime.block_on(send(args, signed));
    let (status, body) = match response {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("photonctl: request failed: {err:#}");
            return Ok(ExitCode::from(2));
        }
    };
    println!("{status}");
    println!("{}", String::from_utf8_lossy(&body));
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn send(
    args: &RequestArgs,
    signed: SignedRequest,
) -> anyhow::Result<(http::StatusCode, Bytes)> {
    let scheme = signed.uri.scheme_str().unwrap_or("http");
    let default_port = if scheme == "https" { 443 } else { 80 };
    let authority = signed.uri.authority().context("URL has no host")?;
    let port = authority.port_u16().unwrap_or(default_port);
    let tcp = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let request = build_request(args, &signed)?;
    match scheme {
        "https" => {
            let ca = args.ca.as_ref().context(
                "an https:// URL needs --ca FILE (the CA that issued the gateway's certificate)",
            )?;
            let tls = tls_connect(ca, authority.host(), tcp, args.http1).await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            exchange(TokioIo::new(tls), h2, request).await
        }
        "http" => exchange(TokioIo::new(tcp), false, request).await,
        other => bail!("unsupported URL scheme {other:?}"),
    }
}

fn build_request(
    args: &RequestArgs,
    signed: &SignedRequest,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let mut builder = http::Request::builder()
        .method(signed.method.as_str())
        .uri(signed.uri.clone())
        .header(http::header::HOST, &signed.host);
    if !signed.body.is_empty() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in &signed.headers {
        builder = builder.header(*name, value);
    }
    for line in &args.headers {
        let (name, value) = line
            .split_once(':')
            .with_context(|| format!("header {line:?} has no ':'"))?;
        builder = builder.header(name.trim(), value.trim());
    }
    Ok(builder.body(Full::new(Bytes::from(signed.body.clone())))?)
}

/// A TLS connection trusting only the CA in `ca`, offering h2 unless `http1`.
pub(super) async fn tls_connect(
    ca: &std::path::Path,
    host: &str,
    tcp: tokio::net::TcpStream,
    http1: bool,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))?
    {
        roots.add(cert.with_context(|| format!("parsing {}", ca.display()))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = if http1 {
        vec![b"http/1.1".to_vec()]
    } else {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    };
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector.connect(name, tcp).await.context("TLS handshake")
}

async fn exchange<T>(
    io: TokioIo<T>,
    h2: bool,
    mut request: http::Request<Full<Bytes>>,
) -> anyhow::Result<(http::StatusCode, Bytes)>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        request.headers_mut().remove(http::header::HOST);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        *request.uri_mut() = origin_form(request.uri())?;
        sender.send_request(request).await?
    };
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

/// `/path?query`, the request target HTTP/1.1 sends.
fn origin_form(uri: &http::Uri) -> anyhow::Result<http::Uri> {
    let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
    Ok(target.parse()?)
}
