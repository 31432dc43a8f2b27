//! The real `photondb-gateway` on loopback in front of a real storaged, and an HTTPS client
//! (HTTP/2 or HTTP/1.1 over rustls) that signs its requests as partners do.
//!
//! pingora takes an address string and cannot report the port it bound, so [`Gateway::start`]
//! picks its ports (the public listener and the private metrics listener) by binding
//! `127.0.0.1:0` and dropping the listeners, and starts again on new ports if the gateway exits
//! (someone took a port meanwhile). Ready means: a TLS handshake succeeds and the metrics
//! listener accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
pub use photondb_gateway::config::RawConfig;
use photondb_pki::files;
use photondb_proto::signing::{self, AuthFields, BodyDigest, RequestParts, SecretKey, Timestamp};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{START_TIMEOUT, STOP_TIMEOUT, TestCerts, poll_until};

/// The name on the gateway's public certificate that clients verify.
pub const GATEWAY_NAME: &str = "localhost";
/// The partner id the test client signs as.
pub const PARTNER: &str = "e2e-tests";

/// The gateway binary.
pub fn gateway_binary() -> anyhow::Result<PathBuf> {
    crate::workspace_binary("photondb-gateway", "photondb-gateway")
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// 32 random bytes (a test key's seed).
fn rand_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    seed[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    seed
}

/// Two distinct ports that were free a moment ago (both bound at once, so never the same).
fn two_free_ports() -> anyhow::Result<(u16, u16)> {
    let a = TcpListener::bind("127.0.0.1:0")?;
    let b = TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// The gateway binary with `--config config`, stderr to `stderr`, and none of the
/// environment overrides set (each caller decides about `PHOTONDB_DEV_MODE`).
fn gateway_command(config: &Path, stderr: std::fs::File) -> anyhow::Result<Command> {
    let mut cmd = Command::new(gateway_binary()?);
    cmd.arg("--config")
        .arg(config)
        .env_remove("PHOTONDB_DEV_MODE")
        .env_remove("PHOTONDB_TLS_CERT")
        .env_remove("PHOTONDB_TLS_KEY")
        .env_remove("PHOTONDB_DISABLE_TLS")
        .env_remove("PHOTONDB_TLS_DISABLE_VERIFY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    Ok(cmd)
}

/// A running `photondb-gateway` with its security pipeline on (outside dev mode), killed on
/// drop. Its policy directory (a copy of the repository's `policies/`) defines the partner
/// [`PARTNER`] with a key made for this gateway, bound to `admin` on `*`, on an unlimited plan;
/// `anonymous` may read every table under `/public/*`.
pub struct Gateway {
    child: Option<Child>,
    addr: SocketAddr,
    metrics: SocketAddr,
    work: tempfile::TempDir,
    ca_pem: String,
    /// The seed of [`PARTNER`]'s signing key (clients sign with it).
    seed: [u8; 32],
}

/// The plan of the test partner: no limit a test would hit by accident.
const UNLIMITED_PLAN: &str = "\n[[plan]]\nname = \"e2e-unlimited\"\nrate_per_sec = 1000000\nburst = 1000000\ndaily_quota = 0\n";

/// The repository's example policy set.
pub fn repo_policies() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A plan for [`PARTNER`] instead of the unlimited one (see [`Setup::plan`]); it is written
/// to `plans.toml` as [`TEST_PLAN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartnerPlan {
    pub rate_per_sec: u32,
    pub burst: u32,
    /// Requests per UTC day; 0: unlimited.
    pub daily_quota: u64,
}

/// The name of a [`PartnerPlan`] in the policy directory.
pub const TEST_PLAN: &str = "e2e-plan";

/// Copies the repository's policies into `dir` and defines `partner` (with `public_key`,
/// base64) as admin on `*`, plus anonymous reads of every table under `/public/*`.
pub fn write_policies(dir: &Path, partner: &str, public_key: &str) -> anyhow::Result<()> {
    write_policies_on(dir, partner, public_key, None)
}

/// [`write_policies`], with `partner` on `plan` ([`TEST_PLAN`]) when one is given, else on
/// the unlimited plan.
pub fn write_policies_on(
    dir: &Path,
    partner: &str,
    public_key: &str,
    plan: Option<PartnerPlan>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(repo_policies())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            std::fs::copy(&path, dir.join(path.file_name().context("file name")?))?;
        }
    }
    append(&dir.join("plans.toml"), UNLIMITED_PLAN)?;
    let plan_name = match plan {
        Some(p) => {
            append(
                &dir.join("plans.toml"),
                &format!(
                    "\n[[plan]]\nname = \"{TEST_PLAN}\"\nrate_per_sec = {}\nburst = {}\ndaily_quota = {}\n",
                    p.rate_per_sec, p.burst, p.daily_quota
                ),
            )?;
            TEST_PLAN
        }
        None => "e2e-unlimited",
    };
    append(
        &dir.join("partners.toml"),
        &format!(
            "\n[[partner]]\nid = \"{partner}\"\nplan = \"{plan_name}\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"{public_key}\"\n"
        ),
    )?;
    append(
        &dir.join("bindings.toml"),
        &format!(
            "\n[[binding]]\nprincipal = \"partner:{partner}\"\nrole = \"admin\"\nresources = [\"*\"]\n\n[[binding]]\nprincipal = \"anonymous\"\nrole = \"public-reader\"\nresources = [\"db:*/table:*\"]\n"
        ),
    )
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// How [`Gateway::start_with`] sets a gateway up beyond its configuration.
#[derive(Clone, Copy, Default)]
pub struct Setup<'a> {
    /// Two gateways, one partner: this gateway gets the twin's [`PARTNER`] key (the same
    /// public key in its policy directory, the same [`Gateway::partner_key`]) and serves the
    /// twin's host name besides its own (`hosts`, unless the tweak sets them), so one signed
    /// request (`Host` = the twin's authority, see [`Gateway::signer`]) is valid at both,
    /// and [`HttpsClient`]s of either work as usual.
    pub twin: Option<&'a Gateway>,
    /// [`PARTNER`]'s plan; `None`: unlimited.
    pub plan: Option<PartnerPlan>,
}

impl Gateway {
    /// The configuration the tests start from: the security pipeline on, the certificates of
    /// `certs`, storaged at `upstream`, short timeouts, fast hot reloads (certificates and
    /// policies), no per-IP rate limit. [`Gateway::start`] fills in `hosts`, `state_dir` and
    /// `policy.dir`.
    pub fn config(certs: &TestCerts, upstream: SocketAddr) -> RawConfig {
        let mut c = RawConfig::default();
        c.policy.reload_interval_ms = 200;
        c.tls.cert = Some(certs.path(files::GATEWAY_CERT));
        c.tls.key = Some(certs.path(files::GATEWAY_KEY));
        c.tls.reload_interval_ms = 100;
        c.upstream.address = upstream.to_string();
        c.upstream.ca = Some(certs.path(files::CA_CERT));
        c.upstream.client_cert = Some(certs.path(files::GATEWAY_CLIENT_CERT));
        c.upstream.client_key = Some(certs.path(files::GATEWAY_CLIENT_KEY));
        c.upstream.server_name = crate::STORAGED_NAME.into();
        c.upstream.timeout_ms = 3_000;
        c.upstream.connect_timeout_ms = 1_000;
        c.limits.ip_rate_per_sec = 0;
        c.limits.ip_burst = 0;
        c.server.threads = 1;
        c.server.grace_period_ms = 0;
        c.server.graceful_shutdown_timeout_ms = 1_000;
        c
    }

    /// Starts a gateway in front of `upstream` with [`Gateway::config`] changed by `tweak`.
    /// `listen` and `metrics.listen` are always set here, to free loopback ports.
    pub fn start(
        certs: &TestCerts,
        upstream: SocketAddr,
        tweak: impl Fn(&mut RawConfig),
    ) -> anyhow::Result<Self> {
        Self::start_with(certs, upstream, Setup::default(), tweak)
    }

    /// [`Gateway::start`], set up as `setup` says: [`PARTNER`] on another plan, or sharing
    /// the partner key and host name of a twin gateway.
    pub fn start_with(
        certs: &TestCerts,
        upstream: SocketAddr,
        setup: Setup<'_>,
        tweak: impl Fn(&mut RawConfig),
    ) -> anyhow::Result<Self> {
        let mut gw = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics: SocketAddr::from(([127, 0, 0, 1], 0)),
            work: tempfile::tempdir()?,
            ca_pem: certs.ca_pem().to_owned(),
            seed: setup.twin.map_or_else(rand_seed, |twin| twin.seed),
        };
        let public_key = SecretKey::from_seed(&gw.seed).public_key().to_base64();
        write_policies_on(&gw.policy_dir(), PARTNER, &public_key, setup.plan)?;
        let mut config = Self::config(certs, upstream);
        config.state_dir = Some(gw.work.path().join("state"));
        // Each gateway its own pid file and upgrade socket (the default is one per user).
        config.server.runtime_dir = Some(gw.work.path().join("run"));
        config.policy.dir = Some(gw.policy_dir());
        tweak(&mut config);
        let hosts_given = !config.hosts.is_empty();
        for _ in 0..5 {
            let (listen, metrics) = two_free_ports()?;
            gw.addr = SocketAddr::from(([127, 0, 0, 1], listen));
            gw.metrics = SocketAddr::from(([127, 0, 0, 1], metrics));
            config.listen = gw.addr.to_string();
            config.metrics.listen = Some(gw.metrics.to_string());
            if !hosts_given {
                config.hosts = vec![gw.authority()];
                config.hosts.extend(setup.twin.map(Self::authority));
            }
            std::fs::write(gw.config_path(), toml::to_string(&config)?)?;
            if gw.spawn()? {
                return Ok(gw);
            }
        }
        bail!("the gateway did not start; stderr:\n{}", gw.stderr())
    }

    /// Runs the gateway on [`Gateway::config`] changed by `tweak` (with `listen` set to a free
    /// loopback port, a policy directory and a state directory first, and no `PHOTONDB_*`
    /// overrides: the file decides dev mode) and
    /// waits (bounded) for it to exit, as it must when it refuses to start. Returns the exit
    /// status and everything it wrote to stderr.
    pub fn run_to_exit(
        certs: &TestCerts,
        upstream: SocketAddr,
        tweak: impl Fn(&mut RawConfig),
    ) -> anyhow::Result<(ExitStatus, String)> {
        let work = tempfile::tempdir()?;
        let public_key = SecretKey::from_seed(&rand_seed()).public_key().to_base64();
        write_policies(&work.path().join("policies"), PARTNER, &public_key)?;
        let mut config = Self::config(certs, upstream);
        config.listen = SocketAddr::from(([127, 0, 0, 1], free_port()?)).to_string();
        config.hosts = vec![GATEWAY_NAME.to_owned()];
        config.state_dir = Some(work.path().join("state"));
        config.policy.dir = Some(work.path().join("policies"));
        config.server.runtime_dir = Some(work.path().join("run"));
        tweak(&mut config);
        let path = work.path().join("gateway.toml");
        std::fs::write(&path, toml::to_string(&config)?)?;
        let stderr_path = work.path().join("stderr.log");
        let mut child = gateway_command(&path, std::fs::File::create(&stderr_path)?)?
            .spawn()
            .context("spawning photondb-gateway")?;
        let status = poll_until(START_TIMEOUT, || child.try_wait().ok().flatten());
        let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
        match status {
            Some(status) => Ok((status, stderr)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the gateway was still running after {START_TIMEOUT:?}; stderr:\n{stderr}")
            }
        }
    }

    /// Starts the process and waits until it completes TLS handshakes and its metrics
    /// listener accepts; `false` if it exited.
    fn spawn(&mut self) -> anyhow::Result<bool> {
        let stderr = std::fs::File::create(self.stderr_path())?;
        let child = gateway_command(&self.config_path(), stderr)?
            .spawn()
            .context("spawning photondb-gateway")?;
        self.child = Some(child);
        let tls = tls_config(&self.ca_pem, &[b"http/1.1"])?;
        let outcome = poll_until(START_TIMEOUT, || {
            let child = self.child.as_mut()?;
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            let up = handshake_ok(self.addr, &tls)
                && TcpStream::connect_timeout(&self.metrics, Duration::from_millis(200)).is_ok();
            up.then_some(true)
        });
        match outcome {
            Some(true) => Ok(true),
            Some(false) => {
                self.child = None;
                Ok(false)
            }
            None => bail!(
                "the gateway did not accept TLS within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            ),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The private metrics listener (plain HTTP on loopback).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics
    }

    /// The whole HTTP response (head and Prometheus text) to `GET /metrics` on the metrics
    /// listener.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        let mut tcp = tokio::net::TcpStream::connect(self.metrics).await?;
        let request = "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        tcp.write_all(request.as_bytes()).await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut out)).await??;
        anyhow::ensure!(
            out.starts_with("HTTP/1.1 200"),
            "the metrics listener answered: {out:?}"
        );
        Ok(out)
    }

    /// `localhost:<port>`: what clients put in `Host` / `:authority`.
    pub fn authority(&self) -> String {
        format!("{GATEWAY_NAME}:{}", self.addr.port())
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// The gateway's policy directory (edit it to change policy; it reloads within ~200 ms).
    pub fn policy_dir(&self) -> PathBuf {
        self.work.path().join("policies")
    }

    /// [`PARTNER`]'s signing key.
    pub fn partner_key(&self) -> SecretKey {
        SecretKey::from_seed(&self.seed)
    }

    /// The signature header lines (`Name: value\r\n` each) for a raw HTTP/1.1 request, signed
    /// by [`PARTNER`] over `method`, `target` (path and query) and `body`.
    pub fn signature_lines(&self, method: &str, target: &str, body: &[u8]) -> String {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts = RequestParts {
            method,
            host: &self.authority(),
            path,
            query,
            body: BodyDigest::of(body),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let timestamp = Timestamp::now().format();
        let headers = AuthFields::new(PARTNER, &request_id, &timestamp)
            .and_then(|f| signing::signature_headers(&self.partner_key(), &parts, &f, None))
            .expect("a request in normal form signs");
        headers
            .iter()
            .map(|(n, v)| format!("{n}: {v}\r\n"))
            .collect()
    }

    pub fn config_path(&self) -> PathBuf {
        self.work.path().join("gateway.toml")
    }

    fn stderr_path(&self) -> PathBuf {
        self.work.path().join("stderr.log")
    }

    /// Everything the gateway logged (of its current run).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client connected with `protocol`.
    pub async fn client(&self, protocol: Protocol) -> anyhow::Result<HttpsClient> {
        HttpsClient::connect(self, protocol).await
    }

    /// A fresh TLS connection offering `alpn`.
    pub async fn tls(
        &self,
        alpn: &[&[u8]],
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let connector = tokio_rustls::TlsConnector::from(tls_config(&self.ca_pem, alpn)?);
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(connector
            .connect(ServerName::try_from(GATEWAY_NAME)?, tcp)
            .await?)
    }

    /// Sends `raw` bytes as one HTTP/1.1 exchange (the request should say
    /// `Connection: close`) and parses the answer. For requests a well-behaved client library
    /// will not send (paths not in normal form, broken framing).
    pub async fn raw_http1(&self, raw: &[u8]) -> anyhow::Result<Reply> {
        let mut tls = self.tls(&[b"http/1.1"]).await?;
        tls.write_all(raw).await?;
        let mut buf = Vec::new();
        // A response that never ends fails the parse below with what arrived.
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
        parse_http1(&buf)
    }

    /// A raw `method target` request with `Connection: close`, no body.
    pub async fn raw_request(&self, method: &str, target: &str) -> anyhow::Result<Reply> {
        let raw = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            self.authority()
        );
        self.raw_http1(raw.as_bytes()).await
    }

    /// One raw HTTP/1.1 request to this gateway with `Connection: close`, `headers` (the
    /// credentials a test signed), `Content-Length`, and `Content-Type: application/json` when
    /// there is a body; sent by [`Gateway::raw_http1`].
    pub fn http1_request<N: AsRef<str>, V: AsRef<str>>(
        &self,
        method: &str,
        target: &str,
        headers: &[(N, V)],
        body: &[u8],
    ) -> Vec<u8> {
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.authority(),
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        for (name, value) in headers {
            head.push_str(&format!("{}: {}\r\n", name.as_ref(), value.as_ref()));
        }
        head.push_str("\r\n");
        let mut raw = head.into_bytes();
        raw.extend_from_slice(body);
        raw
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        match poll_until(STOP_TIMEOUT, || child.try_wait().ok().flatten()) {
            Some(s) => Ok(s),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the gateway did not exit within {STOP_TIMEOUT:?}")
            }
        }
    }

    /// Stops the gateway ([`Gateway::stop`]: SIGTERM, bounded wait) and starts the same
    /// binary again on the same configuration file: the same ports (so the same
    /// [`Gateway::authority`] that signed requests name), policy directory and state
    /// directory (replay ids and daily quotas live there). Returns once TLS handshakes
    /// succeed again. New ports would change the authority, so if the new process exits
    /// (someone took a port meanwhile) this tries again a few times, then fails.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        for _ in 0..3 {
            if self.spawn()? {
                return Ok(());
            }
        }
        bail!(
            "the gateway did not start again on {}; stderr:\n{}",
            self.addr,
            self.stderr()
        )
    }

    /// Signs raw requests as [`PARTNER`] with this gateway's key, for this gateway's host.
    pub fn signer(&self) -> Signer {
        Signer {
            partner: PARTNER.to_owned(),
            seed: self.seed,
            host: self.authority(),
        }
    }

    /// A request signed now by [`PARTNER`] for this gateway, as raw HTTP/1.1 with
    /// `Connection: close` (see [`Signer::request`]).
    pub fn signed_request(&self, method: &str, target: &str, body: &[u8]) -> SignedRequest {
        self.signer().request(method, target, body)
    }

    /// The bytes of [`Gateway::signed_request`]: send them as often as you like with
    /// [`Gateway::raw_http1`].
    pub fn raw_signed_http1(&self, method: &str, target: &str, body: &[u8]) -> Vec<u8> {
        self.signed_request(method, target, body).bytes
    }

    /// Sends `request` (to this gateway, whatever host it names) as one HTTP/1.1 exchange;
    /// the reply remembers the request id sent, so [`Reply::expect`] checks it came back.
    pub async fn send_signed(&self, request: &SignedRequest) -> anyhow::Result<Reply> {
        let mut reply = self.raw_http1(&request.bytes).await?;
        reply.sent_request_id = Some(request.request_id.clone());
        Ok(reply)
    }
}

/// Signs raw HTTP/1.1 requests as a partner for one host: to send the very same signed
/// request twice, to two gateways, or with a timestamp of the test's choosing.
#[derive(Clone)]
pub struct Signer {
    partner: String,
    /// The seed of the partner's signing key ([`SecretKey`] is deliberately not `Clone`).
    seed: [u8; 32],
    host: String,
}

/// A signed request: HTTP/1.1 bytes with `Connection: close` (what [`Gateway::raw_http1`]
/// expects) and the `X-Request-Id` they carry.
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub bytes: Vec<u8>,
    pub request_id: String,
}

impl Signer {
    /// The `Host` the requests carry and sign.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// A request signed now, with a fresh request id.
    pub fn request(&self, method: &str, target: &str, body: &[u8]) -> SignedRequest {
        self.request_at(method, target, body, Timestamp::now())
    }

    /// A request whose `X-Timestamp` is `at`, with a fresh request id; `target` is the path
    /// (in normal form) with its query string.
    pub fn request_at(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        at: Timestamp,
    ) -> SignedRequest {
        use std::fmt::Write as _;
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let parts = RequestParts {
            method,
            host: &self.host,
            path,
            query,
            body: BodyDigest::of(body),
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let timestamp = at.format();
        let key = SecretKey::from_seed(&self.seed);
        let headers = AuthFields::new(&self.partner, &request_id, &timestamp)
            .and_then(|f| signing::signature_headers(&key, &parts, &f, None))
            .expect("a request in normal form signs");
        let mut head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            self.host
        );
        for (name, value) in &headers {
            let _ = write!(head, "{name}: {value}\r\n");
        }
        if !body.is_empty() {
            head.push_str("Content-Type: application/json\r\n");
        }
        let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(body);
        SignedRequest { bytes, request_id }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A rustls client config (ring provider) trusting only the test CA.
pub fn tls_config(ca_pem: &str, alpn: &[&[u8]]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// Whether a blocking TLS handshake with `addr` completes within a second.
fn handshake_ok(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> bool {
    let attempt = || -> anyhow::Result<()> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(1)))?;
        let name = ServerName::try_from(GATEWAY_NAME)?;
        let mut conn = rustls::ClientConnection::new(config.clone(), name)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        Ok(())
    };
    attempt().is_ok()
}

/// Which HTTP version a client speaks (chosen by ALPN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Http2,
    Http1,
}

impl Protocol {
    pub const BOTH: [Self; 2] = [Self::Http2, Self::Http1];

    fn alpn(self) -> &'static [u8] {
        match self {
            Self::Http2 => b"h2",
            Self::Http1 => b"http/1.1",
        }
    }
}

enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// An HTTPS client of one gateway: one connection, re-opened if the server closed it.
/// Requests carry `X-Request-Id` (a fresh UUID) and, where the path is in normal form, an
/// Ed25519 signature (DESIGN §3.2) — dev mode does not check it yet; partners send it anyway.
pub struct HttpsClient {
    addr: SocketAddr,
    authority: String,
    ca_pem: String,
    protocol: Protocol,
    key: SecretKey,
    sender: tokio::sync::Mutex<Option<Sender>>,
}

impl HttpsClient {
    async fn connect(gw: &Gateway, protocol: Protocol) -> anyhow::Result<Self> {
        let client = Self {
            addr: gw.addr,
            authority: gw.authority(),
            ca_pem: gw.ca_pem.clone(),
            protocol,
            key: gw.partner_key(),
            sender: tokio::sync::Mutex::new(None),
        };
        *client.sender.lock().await = Some(client.open().await?);
        Ok(client)
    }

    async fn open(&self) -> anyhow::Result<Sender> {
        let connector =
            tokio_rustls::TlsConnector::from(tls_config(&self.ca_pem, &[self.protocol.alpn()])?);
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect(ServerName::try_from(GATEWAY_NAME)?, tcp)
            .await?;
        let negotiated = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
        anyhow::ensure!(
            negotiated.as_deref() == Some(self.protocol.alpn()),
            "ALPN: asked for {:?}, got {negotiated:?}",
            self.protocol
        );
        let io = TokioIo::new(tls);
        Ok(match self.protocol {
            Protocol::Http1 => {
                let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
                tokio::spawn(conn);
                Sender::H1(sender)
            }
            Protocol::Http2 => {
                let (sender, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                tokio::spawn(conn);
                Sender::H2(sender)
            }
        })
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub async fn get(&self, target: &str) -> anyhow::Result<Reply> {
        self.send("GET", target, &[], Bytes::new()).await
    }

    pub async fn put(&self, target: &str, body: impl Into<Bytes>) -> anyhow::Result<Reply> {
        self.send("PUT", target, &[], body.into()).await
    }

    /// Creates database `db` and its table `table`; panics unless both answer 201.
    pub async fn create_table(&self, db: &str, table: &str) {
        for target in [
            format!("/v1/dbs/{db}"),
            format!("/v1/dbs/{db}/tables/{table}"),
        ] {
            let reply = self.put(&target, "").await;
            let reply = reply.unwrap_or_else(|e| panic!("PUT {target}: {e:#}"));
            reply.expect(201, None);
        }
    }

    pub async fn post(&self, target: &str, body: impl Into<Bytes>) -> anyhow::Result<Reply> {
        self.send("POST", target, &[], body.into()).await
    }

    pub async fn delete(&self, target: &str) -> anyhow::Result<Reply> {
        self.send("DELETE", target, &[], Bytes::new()).await
    }

    /// Sends one request; `target` is the path with its query string.
    pub async fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let request_id = uuid::Uuid::new_v4().to_string();
        let request = self.build(method, target, headers, body, &request_id)?;
        let mut slot = self.sender.lock().await;
        let alive = match slot.as_mut() {
            Some(Sender::H1(s)) => s.ready().await.is_ok(),
            Some(Sender::H2(s)) => s.ready().await.is_ok(),
            None => false,
        };
        if !alive {
            *slot = Some(self.open().await?);
        }
        let response = match slot.as_mut().context("connected")? {
            Sender::H1(s) => s.send_request(request).await?,
            Sender::H2(s) => {
                let mut s = s.clone();
                drop(slot);
                s.send_request(request).await?
            }
        };
        let (head, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(30), body.collect())
            .await
            .context("response body timed out")??
            .to_bytes();
        Ok(Reply {
            status: head.status.as_u16(),
            headers: head.headers,
            body,
            sent_request_id: Some(request_id),
        })
    }

    fn build(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Bytes,
        request_id: &str,
    ) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let uri = match self.protocol {
            Protocol::Http2 => format!("https://{}{target}", self.authority),
            Protocol::Http1 => target.to_owned(),
        };
        let mut builder = http::Request::builder().method(method).uri(uri);
        if self.protocol == Protocol::Http1 {
            builder = builder.header(http::header::HOST, &self.authority);
        }
        if !body.is_empty() {
            builder = builder.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in self.signature(method, target, &body, request_id) {
            builder = builder.header(name, value);
        }
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        Ok(builder.body(Full::new(body))?)
    }

    /// The signature headers (request id included), or only the request id where the scheme
    /// refuses the request (a path not in normal form): an attacker's request is sent unsigned.
    fn signature(
        &self,
        method: &str,
        target: &str,
        body: &[u8],
        request_id: &str,
    ) -> Vec<(&'static str, String)> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let timestamp = Timestamp::now().format();
        let parts = RequestParts {
            method,
            host: &self.authority,
            path,
            query,
            body: BodyDigest::of(body),
        };
        let signed = AuthFields::new(PARTNER, request_id, &timestamp)
            .and_then(|fields| signing::signature_headers(&self.key, &parts, &fields, None));
        signed.unwrap_or_else(|_| vec![(signing::HEADER_REQUEST_ID, request_id.to_owned())])
    }
}

/// A complete response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The `X-Request-Id` the client sent, if any.
    pub sent_request_id: Option<String>,
}

/// Text that must never reach a client: it would reveal internals (DESIGN §2).
pub const INTERNAL_TEXT: &[&str] = &[
    "rustls",
    "tonic",
    "transport",
    "panicked",
    "hyper",
    "pingora",
    "h2::",
    "::",
    "Error {",
    "Err(",
    "Some(",
    "Status {",
    "os error",
    "/tmp",
    "/work",
    "src/",
    ".rs",
    "storaged.photondb.local",
    "127.0.0.1",
];

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of a problem+json body.
    pub fn code(&self) -> Option<String> {
        self.json()["code"].as_str().map(str::to_owned)
    }

    /// `status` and, for anything but 2xx, a problem+json body with `code`, the request id
    /// (the one sent, when one was), and no internal text. Panics with the whole reply if not.
    pub fn expect(&self, status: u16, code: Option<&str>) -> serde_json::Value {
        assert_eq!(self.status, status, "{self}");
        let v = self.json();
        if let Some(code) = code {
            self.assert_problem(code, &v);
        }
        self.assert_no_internal_text(&[]);
        v
    }

    fn assert_problem(&self, code: &str, v: &serde_json::Value) {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self}"
        );
        assert_eq!(v["code"], code, "{self}");
        assert_eq!(v["status"], self.status, "{self}");
        assert_eq!(
            v["type"],
            format!("urn:photondb:problem:{code}").as_str(),
            "{self}"
        );
        let rid = v["request_id"].as_str().unwrap_or_default();
        assert!(!rid.is_empty(), "no request_id: {self}");
        assert_eq!(self.header("x-request-id"), Some(rid), "{self}");
        if let Some(sent) = &self.sent_request_id {
            assert_eq!(rid, sent, "the client's UUID request id is kept: {self}");
        }
    }

    /// None of [`INTERNAL_TEXT`] nor any of `more` (e.g. the data directory) in the body.
    pub fn assert_no_internal_text(&self, more: &[&str]) {
        let body = self.text();
        for needle in INTERNAL_TEXT.iter().chain(more) {
            assert!(
                !body.contains(needle),
                "internal text {needle:?} in the body: {self}"
            );
        }
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {:?} {}", self.status, self.headers, self.text())
    }
}

/// Parses a complete HTTP/1.1 response (`Content-Length`, chunked, or read to close).
fn parse_http1(buf: &[u8]) -> anyhow::Result<Reply> {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("no complete head in {:?}", String::from_utf8_lossy(buf)))?;
    let head = std::str::from_utf8(&buf[..split])?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let mut headers = HeaderMap::new();
    for line in lines {
        let (name, value) = line.split_once(':').context("header without ':'")?;
        headers.append(
            HeaderName::from_bytes(name.trim().as_bytes())?,
            HeaderValue::from_str(value.trim())?,
        );
    }
    let rest = &buf[split + 4..];
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(len) = headers.get("content-length") {
        let len: usize = len.to_str()?.parse()?;
        rest.get(..len)
            .context("body shorter than Content-Length")?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body: body.into(),
        sent_request_id: None,
    })
}

fn dechunk(mut rest: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = std::str::from_utf8(&rest[..end])?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        rest = &rest[end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(rest.get(..size).context("short chunk")?);
        rest = rest.get(size + 2..).context("chunk without CRLF")?;
    }
}
