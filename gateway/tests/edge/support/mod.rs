//! Starts the real `photondb-gateway` binary on loopback with generated certificates, and
//! speaks HTTP/1.1 or HTTP/2 to it over TLS.
#![allow(dead_code, unreachable_pub)]

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use photondb_gateway::certs::CertsSpec;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Test PKI written to a temporary directory.
pub struct Certs {
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
}

impl Certs {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The certificates `photonctl certs init` writes, made by the same code.
pub fn certs() -> Certs {
    let dir = tempfile::tempdir().unwrap();
    let set = photondb_gateway::certs::generate(&CertsSpec::default()).unwrap();
    set.write_to(dir.path()).unwrap();
    Certs {
        ca_pem: set.ca.cert.cert_pem.clone(),
        dir,
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running gateway, killed on drop.
pub struct Gateway {
    pub child: Child,
    pub addr: SocketAddr,
    pub metrics: SocketAddr,
    pub certs: Arc<Certs>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The config file used by the tests; `extra` is appended to the top-level table.
pub fn config_text(certs: &Certs, listen: u16, metrics: u16, upstream: u16, extra: &str) -> String {
    config_with_limits(certs, listen, metrics, upstream, extra, "")
}

/// [`config_text`] with extra lines in the `[limits]` table.
pub fn config_with_limits(
    certs: &Certs,
    listen: u16,
    metrics: u16,
    upstream: u16,
    extra: &str,
    limits: &str,
) -> String {
    let p = |n: &str| certs.path(n).display().to_string();
    format!(
        r#"listen = "127.0.0.1:{listen}"
{extra}

[tls]
cert = "{cert}"
key = "{key}"
reload_interval_ms = 200

[upstream]
address = "127.0.0.1:{upstream}"
ca = "{ca}"
client_cert = "{ccert}"
client_key = "{ckey}"
server_name = "storaged.photondb.local"
timeout_ms = 1000
connect_timeout_ms = 500
read_retries = 0

[limits]
header_timeout_ms = 1000
body_timeout_ms = 2000
max_body_bytes = 1024
{limits}

[breaker]
failure_threshold = 2
open_ms = 60000

[metrics]
listen = "127.0.0.1:{metrics}"

[server]
threads = 1
grace_period_secs = 0
graceful_shutdown_timeout_secs = 1
"#,
        cert = p("gateway.pem"),
        key = p("gateway-key.pem"),
        ca = p("ca.pem"),
        ccert = p("gateway-client.pem"),
        ckey = p("gateway-client-key.pem"),
    )
}

pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_photondb-gateway"));
    cmd.env_remove("PHOTONDB_DEV_MODE")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Runs the binary with a config and dev-mode setting; returns its exit status and stderr.
pub fn run_to_exit(config: &str, dev_mode: bool) -> (ExitStatus, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(config.as_bytes())
        .unwrap();
    let mut cmd = binary();
    if dev_mode {
        cmd.env("PHOTONDB_DEV_MODE", "1");
    }
    let out = cmd.arg("--config").arg(&path).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts a dev-mode gateway whose storaged is down (nothing listens upstream).
/// pingora takes an address string and cannot report a bound port, so a free port is
/// picked first and the start retried if another process took it meanwhile.
pub fn start(extra: &str) -> Gateway {
    start_with(Arc::new(certs()), free_port(), extra)
}

/// Starts a gateway (storaged down) with extra lines in its `[limits]` table.
pub fn start_with_limits(limits: &str) -> Gateway {
    start_full(Arc::new(certs()), free_port(), "", limits)
}

/// Starts a dev-mode gateway with these certificates whose storaged is at `upstream`.
pub fn start_with(certs: Arc<Certs>, upstream: u16, extra: &str) -> Gateway {
    start_full(certs, upstream, extra, "")
}

fn start_full(certs: Arc<Certs>, upstream: u16, extra: &str, limits: &str) -> Gateway {
    for _ in 0..5 {
        let certs = certs.clone();
        let (listen, metrics) = (free_port(), free_port());
        let path = certs.path("gateway.toml");
        std::fs::write(
            &path,
            config_with_limits(&certs, listen, metrics, upstream, extra, limits),
        )
        .unwrap();
        let child = binary()
            .env("PHOTONDB_DEV_MODE", "1")
            .arg("--config")
            .arg(&path)
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        let metrics: SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
        let mut gw = Gateway {
            child,
            addr,
            metrics,
            certs,
        };
        if wait_ready(&mut gw) {
            return gw;
        }
    }
    panic!("the gateway did not start");
}

fn wait_ready(gw: &mut Gateway) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if gw.child.try_wait().unwrap().is_some() {
            return false;
        }
        let up = [gw.addr, gw.metrics]
            .iter()
            .all(|a| TcpStream::connect_timeout(a, Duration::from_millis(100)).is_ok());
        if up {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A TLS client trusting the test CA, offering `alpn`.
pub fn connector(certs: &Certs, alpn: &[&[u8]]) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    let ca = rustls::pki_types::CertificateDer::from_pem_slice(certs.ca_pem.as_bytes()).unwrap();
    roots.add(ca).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsConnector::from(Arc::new(cfg))
}

use rustls::pki_types::pem::PemObject;

pub async fn connect(gw: &Gateway, alpn: &[&[u8]]) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    connector(&gw.certs, alpn).connect(name, tcp).await.unwrap()
}

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_string()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{}:", name.to_ascii_lowercase());
        self.head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    }
}

/// Sends raw request bytes (with `Connection: close`) and reads the whole response.
pub async fn send_raw(gw: &Gateway, raw: &[u8]) -> Response {
    let mut tls = connect(gw, &[b"http/1.1"]).await;
    tls.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    parse(&buf)
}

fn parse(buf: &[u8]) -> Response {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response head");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap();
    Response {
        status,
        head,
        body: buf[split + 4..].to_vec(),
    }
}

/// A request with optional extra header lines and body.
pub async fn request(
    gw: &Gateway,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> Response {
    let mut raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in headers {
        raw.push_str(h);
        raw.push_str("\r\n");
    }
    raw.push_str("\r\n");
    let mut bytes = raw.into_bytes();
    bytes.extend_from_slice(body);
    send_raw(gw, &bytes).await
}

pub mod storaged;
