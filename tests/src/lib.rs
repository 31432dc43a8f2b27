//! Helpers for end-to-end tests: start real binaries on loopback, generated certificates.
//!
//! Every server binds `127.0.0.1:0` and reports its address on stdout; every helper waits on a
//! condition with a bounded deadline, never a fixed sleep; children are killed on drop.
// End-to-end helpers wait on real processes, so they read real time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use pb::admin_client::AdminClient;
use pb::storage_client::StorageClient;
pub use photondb_pki as certs;
use photondb_pki::{Authority, CertsSpec, LeafSpec, Role, files};
pub use photondb_proto::v1 as pb;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub mod gateway;
pub mod ledger;
pub mod redis;

/// How long a daemon may take to start or stop before a test fails.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The name on storaged's certificate that clients verify.
pub const STORAGED_NAME: &str = certs::DEFAULT_STORAGED_NAME;

/// Locates a workspace binary next to the test executable (`target/<profile>/`), building it
/// with `cargo build -p <package> --bin <name>` if it is missing or older than the sources of
/// its package (`<root>/<package without "photondb-">`), `proto/`, `pki/` or `Cargo.lock`; the tests
/// crate does not depend on the daemons, so `cargo test` alone would run a stale binary.
pub fn workspace_binary(package: &str, name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current_exe")?;
    // target/<profile>/deps/<test-binary> -> target/<profile>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test executable has no target directory")?;
    let path = profile_dir.join(name);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("workspace root")?;
    let package_dir = root.join(package.trim_start_matches("photondb-"));
    let built = modified(&path);
    let sources = [
        package_dir,
        root.join("proto"),
        root.join("pki"),
        root.join("Cargo.lock"),
    ]
    .iter()
    .filter_map(|p| newest(p))
    .max();
    if built.is_some() && sources.is_none_or(|s| Some(s) <= built) {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "-p", package, "--bin", name]);
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running cargo build for {name}"))?;
    if !status.success() || !path.is_file() {
        bail!("cargo build -p {package} --bin {name} failed ({status})");
    }
    Ok(path)
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The newest modification time of a file, or of any file under a directory.
fn newest(path: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "target" && !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| newest(&e.path()))
        .max()
}

/// The storaged binary.
pub fn storaged_binary() -> anyhow::Result<PathBuf> {
    workspace_binary("photondb-storaged", "photondb-storaged")
}

/// A PEM certificate and key a client presents.
#[derive(Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl ClientCert {
    fn from(pair: &certs::CertAndKey) -> Self {
        Self {
            cert_pem: pair.cert_pem.clone(),
            key_pem: pair.key_pem().to_owned(),
        }
    }

    fn identity(&self) -> tonic::transport::Identity {
        tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem)
    }
}

/// A certificate directory written by the code behind `photonctl certs init`, plus a way to
/// issue more certificates from the same CA (and from another one).
pub struct TestCerts {
    dir: tempfile::TempDir,
    ca: Authority,
    gateway: ClientCert,
}

impl TestCerts {
    pub fn new() -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let set = certs::generate(&CertsSpec::default())?;
        set.write_to(dir.path())?;
        Ok(Self {
            dir,
            gateway: ClientCert::from(&set.gateway_client),
            ca: set.ca,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in the certificate directory (see [`certs::files`]).
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert.cert_pem
    }

    /// The gateway's client certificate, which storaged's allowlist accepts.
    pub fn gateway_client(&self) -> ClientCert {
        self.gateway.clone()
    }

    /// A client certificate from the same CA for `names`, valid between the two instants.
    pub fn issue_client(
        &self,
        names: &[&str],
        not_before: time::OffsetDateTime,
        not_after: time::OffsetDateTime,
    ) -> anyhow::Result<ClientCert> {
        let leaf = LeafSpec {
            common_name: "photondb-test-client".into(),
            names: names.iter().map(|n| (*n).to_owned()).collect(),
            role: Role::Client,
            not_before,
            not_after,
        };
        Ok(ClientCert::from(&self.ca.issue(&leaf)?))
    }

    /// The allowed identity, from the right CA, but expired yesterday.
    pub fn expired_client(&self) -> anyhow::Result<ClientCert> {
        let now = time::OffsetDateTime::now_utc();
        self.issue_client(
            &[certs::DEFAULT_GATEWAY_IDENTITY],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        )
    }

    /// A valid certificate from the right CA whose identity is not on the allowlist.
    pub fn unlisted_client(&self) -> anyhow::Result<ClientCert> {
        let now = time::OffsetDateTime::now_utc();
        self.issue_client(
            &["spiffe://photondb.local/intruder"],
            now - time::Duration::hours(1),
            now + time::Duration::days(1),
        )
    }

    /// The allowed identity, valid, but issued by another CA.
    pub fn foreign_client(&self) -> anyhow::Result<ClientCert> {
        let other = Authority::new("Some other CA", 10)?;
        let leaf = LeafSpec::valid_for(
            "photondb-gateway",
            &[certs::DEFAULT_GATEWAY_IDENTITY.to_owned()],
            Role::Client,
            1,
        );
        Ok(ClientCert::from(&other.issue(&leaf)?))
    }

    /// A new storaged server certificate from the same CA for `names`.
    pub fn issue_server(&self, names: &[&str]) -> anyhow::Result<ClientCert> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf = LeafSpec::valid_for("photondb-storaged", &names, Role::Server, 30);
        Ok(ClientCert::from(&self.ca.issue(&leaf)?))
    }
}

/// What a test changes in storaged's configuration.
#[derive(Debug, Clone)]
pub struct Overrides {
    /// Lines added under `[limits]`, e.g. `max_message_bytes = 65536`.
    pub limits: Vec<String>,
    /// `tls.reload_interval_ms`: how often storaged reads its certificate files.
    pub reload_interval_ms: u64,
    /// Extra environment for the daemon.
    pub env: Vec<(String, String)>,
    /// Raw TOML appended after `[limits]`, e.g. `"[checkpoint]\nwal_mib = 1"`.
    pub extra_toml: String,
    /// Top-level keys, written before the first table, e.g. `wal_segment_mib = 1`.
    pub top_level: Vec<String>,
    /// The store's directory; default: `data` in the daemon's own temporary directory.
    pub data_dir: Option<PathBuf>,
}

impl Default for Overrides {
    fn default() -> Self {
        Self {
            limits: Vec::new(),
            reload_interval_ms: 5_000,
            env: Vec::new(),
            extra_toml: String::new(),
            top_level: Vec::new(),
            data_dir: None,
        }
    }
}

/// A running `photondb-storaged serve` on loopback, with its own data directory.
pub struct Storaged {
    child: Option<Child>,
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    work: tempfile::TempDir,
    data_dir: PathBuf,
    env: Vec<(String, String)>,
    ca_pem: String,
    client: ClientCert,
}

impl Storaged {
    /// Writes a configuration for `certs`, starts the daemon and waits until it is bound.
    pub fn start(certs: &TestCerts, overrides: Overrides) -> anyhow::Result<Self> {
        let work = tempfile::tempdir()?;
        let q = |p: &Path| toml_string(&p.display().to_string());
        let data_dir = overrides
            .data_dir
            .clone()
            .unwrap_or_else(|| work.path().join("data"));
        let mut config = format!(
            "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\ndata_dir = {}\naudit_log = {}\n{}\n\n[tls]\ncert = {}\nkey = {}\nclient_ca = {}\nallowed_clients = [{}]\nreload_interval_ms = {}\n\n[limits]\n",
            q(&data_dir),
            q(&work.path().join("audit.log")),
            overrides.top_level.join("\n"),
            q(&certs.path(files::STORAGED_CERT)),
            q(&certs.path(files::STORAGED_KEY)),
            q(&certs.path(files::CA_CERT)),
            toml_string(certs::DEFAULT_GATEWAY_IDENTITY),
            overrides.reload_interval_ms,
        );
        for line in &overrides.limits {
            config.push_str(line);
            config.push('\n');
        }
        config.push('\n');
        config.push_str(&overrides.extra_toml);
        config.push('\n');
        std::fs::write(work.path().join("storaged.toml"), config)?;
        let mut storaged = Self {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            metrics_addr: None,
            work,
            data_dir,
            env: overrides.env,
            ca_pem: certs.ca_pem().to_owned(),
            client: certs.gateway_client(),
        };
        storaged.spawn()?;
        Ok(storaged)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())?;
        let mut child = Command::new(storaged_binary()?)
            .arg("serve")
            .arg("--config")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("PHOTONDB_STORAGED_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .context("spawning photondb-storaged")?;
        let stdout = child.stdout.take().context("piped stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // The receiver goes away once the address is known; keep draining.
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addr = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = line.strip_prefix("storaged listening on ") {
                        addr = Some(a.trim().parse()?);
                    } else if let Some(m) = line.strip_prefix("metrics on http://") {
                        let m = m.trim().trim_end_matches("/metrics");
                        self.metrics_addr = Some(m.parse()?);
                        break;
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.wait_exit(STOP_TIMEOUT)?;
                    bail!(
                        "storaged exited before listening ({status}); stderr:\n{}",
                        self.stderr()
                    );
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "storaged did not report its address within {START_TIMEOUT:?}; stderr:\n{}",
                        self.stderr()
                    );
                }
            }
        }
        self.addr = addr.context("metrics line came before the listening line")?;
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    pub fn config_path(&self) -> PathBuf {
        self.work.path().join("storaged.toml")
    }

    pub fn audit_log_path(&self) -> PathBuf {
        self.work.path().join("audit.log")
    }

    fn stderr_path(&self) -> PathBuf {
        self.work.path().join("stderr.log")
    }

    /// Everything the daemon wrote to stderr (its logs), across restarts.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// The audit log, one JSON object a line.
    pub fn audit_events(&self) -> Vec<serde_json::Value> {
        read_audit_log(&self.audit_log_path())
    }

    /// Checks the audit log's hash chain end to end; returns the number of events.
    pub fn audit_chain_len(&self) -> anyhow::Result<usize> {
        let text = std::fs::read_to_string(self.audit_log_path())?;
        let options = photondb_proto::audit::VerifyOptions::default();
        let files = [("audit.log".to_owned(), text.clone())];
        let report = photondb_proto::audit::verify(&files, &options)
            .map_err(|e| anyhow::anyhow!("audit chain: {e}\n{text}"))?;
        Ok(report.lines as usize)
    }

    /// Waits (bounded) until an audit event satisfies `pred`, and returns it.
    pub async fn wait_for_audit(
        &self,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let found = wait_until(timeout, || self.audit_events().into_iter().find(&pred)).await;
        found.with_context(|| {
            format!(
                "no matching audit event within {timeout:?}; events: {:#?}",
                self.audit_events()
            )
        })
    }

    /// An endpoint for storaged's address with the CA and `client` (None: no client cert).
    pub fn endpoint(&self, client: Option<&ClientCert>) -> anyhow::Result<Endpoint> {
        self.endpoint_for(client, STORAGED_NAME)
    }

    /// Like [`Storaged::endpoint`], verifying the server certificate for `server_name`.
    pub fn endpoint_for(
        &self,
        client: Option<&ClientCert>,
        server_name: &str,
    ) -> anyhow::Result<Endpoint> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(server_name);
        if let Some(c) = client {
            tls = tls.identity(c.identity());
        }
        Ok(Endpoint::from_shared(format!("https://{}", self.addr))?
            .connect_timeout(Duration::from_secs(10))
            .tls_config(tls)?)
    }

    /// A raw TLS connection (ALPN h2) presenting `client`, for speaking bytes instead of gRPC.
    pub async fn raw_tls(
        &self,
        client: &ClientCert,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(self.ca_pem.as_bytes())?)?;
        let chain = CertificateDer::pem_slice_iter(client.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from(STORAGED_NAME)?;
        Ok(connector.connect(name, tcp).await?)
    }

    /// The gateway's client certificate as this daemon's clients present it.
    pub fn gateway_client(&self) -> &ClientCert {
        &self.client
    }

    /// A connected mTLS channel with the gateway's certificate.
    pub async fn channel(&self) -> anyhow::Result<Channel> {
        Ok(self.endpoint(Some(&self.client))?.connect().await?)
    }

    pub async fn client(&self) -> anyhow::Result<StorageClient<Channel>> {
        Ok(StorageClient::new(self.channel().await?))
    }

    pub async fn admin(&self) -> anyhow::Result<AdminClient<Channel>> {
        Ok(AdminClient::new(self.channel().await?))
    }

    /// The whole HTTP response (head and Prometheus text) to `GET /metrics`.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        self.http_get_metrics_path("/metrics").await
    }

    /// The value of the unlabelled metric `name`.
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        let text = self.metrics_text().await?;
        let value = text
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .with_context(|| format!("no metric {name}"))?;
        Ok(value.trim().parse()?)
    }

    /// The whole HTTP/1.1 response to `GET path` on the metrics listener.
    pub async fn http_get_metrics_path(&self, path: &str) -> anyhow::Result<String> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let addr = self.metrics_addr.context("no metrics listener")?;
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await?;
        let mut out = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await??;
        anyhow::ensure!(
            !out.is_empty(),
            "the metrics listener closed without answering"
        );
        Ok(out)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, then waits (bounded) for the exit.
    pub fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.pid().context("not running")?;
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM {pid} failed");
        }
        self.wait_exit(STOP_TIMEOUT)
    }

    /// SIGKILL, then reaps the process.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Replaces the daemon's extra environment; it takes effect at the next start (`restart`).
    pub fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Waits (bounded) for the daemon to exit by itself and reaps it; past `timeout` it is
    /// killed and this fails.
    pub fn wait_for_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.wait_exit(timeout)
    }

    /// Starts the daemon again on the same configuration and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.spawn()
    }

    fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        let status = poll_until(timeout, || child.try_wait().ok().flatten());
        match status {
            Some(s) => Ok(s),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("storaged did not exit within {timeout:?}")
            }
        }
    }
}

impl Drop for Storaged {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `photondb-storaged` with `args` to completion (offline subcommands).
pub fn run_storaged(args: &[&str]) -> anyhow::Result<std::process::Output> {
    Ok(Command::new(storaged_binary()?)
        .args(args)
        .env_remove("PHOTONDB_STORAGED_CONFIG")
        .stdin(Stdio::null())
        .output()?)
}

/// Reads a JSON-lines audit log; a missing file is empty.
pub fn read_audit_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Calls `probe` every 20 ms until it returns `Some` or `timeout` passes.
pub fn poll_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Like [`poll_until`], for async tests: checks every 20 ms without blocking the runtime.
pub async fn wait_until<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A table reference.
pub fn table(db: &str, table: &str) -> Option<pb::TableRef> {
    Some(pb::TableRef {
        db: db.into(),
        table: table.into(),
    })
}

/// Creates database `db` and its table `table`.
pub async fn create_table(
    c: &mut StorageClient<Channel>,
    db: &str,
    table_name: &str,
) -> anyhow::Result<()> {
    c.create_database(pb::CreateDatabaseRequest { db: db.into() })
        .await?;
    c.create_table(pb::CreateTableRequest {
        table: table(db, table_name),
    })
    .await?;
    Ok(())
}

/// Asserts that every `(key, version)` is readable from `db/table_name` at exactly that version.
pub async fn assert_versions(
    c: &mut StorageClient<Channel>,
    db: &str,
    table_name: &str,
    expected: &[(String, u64)],
) -> anyhow::Result<()> {
    for (key, version) in expected {
        let doc = c
            .get(pb::GetRequest {
                table: table(db, table_name),
                key: key.clone(),
            })
            .await?
            .into_inner()
            .document
            .with_context(|| format!("{key}: acknowledged but missing"))?;
        assert_eq!(doc.version, *version, "{key}");
    }
    Ok(())
}

fn toml_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
