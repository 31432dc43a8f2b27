//! `photonctl bench`: bounded-time load against the gateway over HTTP/2 and HTTP/1.1
//! keep-alive, and the same operations sent straight to storaged's gRPC port in the same run,
//! so the gateway's overhead is reported as a ratio rather than an absolute number.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use photondb_gateway::upstream::{self, ClientTls};
use photondb_pki::files;
use photondb_proto::signing::{self, AuthFields, BodyDigest, RequestParts, SecretKey, Timestamp};
use photondb_proto::v1 as pb;
use photondb_proto::v1::storage_client::StorageClient;

use crate::sign::read_key;

const DB: &str = "bench";
const TABLE: &str = "docs";
const KEYS: usize = 1000;

#[derive(Debug, clap::Args)]
pub(super) struct BenchArgs {
    /// The gateway's base URL.
    #[arg(long, default_value = "https://localhost:8443")]
    gateway: String,
    /// storaged's gRPC address for the baseline (skipped if absent).
    #[arg(long, value_name = "HOST:PORT")]
    storaged: Option<String>,
    /// Directory from `photonctl certs init`: the CA for both, and the gateway's client
    /// certificate for the direct storaged baseline.
    #[arg(long, value_name = "DIR")]
    certs: PathBuf,
    /// The DNS name on storaged's certificate.
    #[arg(long, default_value = photondb_pki::DEFAULT_STORAGED_NAME)]
    storaged_name: String,
    /// Signing key and partner id for the gateway requests.
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    #[arg(long, value_name = "ID")]
    partner: String,
    /// Seconds of load per target (bounded to 1..=120).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=120))]
    duration: u64,
    /// Concurrent requests in flight per target (bounded to 1..=256).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=256))]
    concurrency: u64,
    /// `get` reads one of 1000 documents; `put` overwrites one (a durable commit each).
    #[arg(long, value_enum, default_value_t = Op::Get)]
    op: Op,
    /// Requests per second offered per target, spread over the workers (each waits for its
    /// next slot; a worker that falls behind sends at once). Without it, every worker sends
    /// its next request as soon as the last one is answered. Comparing two targets' CPU per
    /// request is fair only at the same rate: at different rates, batching differs.
    #[arg(long, value_name = "REQ_PER_SEC", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rate: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Op {
    Get,
    Put,
}

/// One target's measured figures.
#[derive(Debug)]
struct Figures {
    name: &'static str,
    ok: usize,
    errors: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Figures {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> u64 {
        let n = self.latencies_us.len();
        if n == 0 {
            return 0;
        }
        self.latencies_us[((n - 1) as f64 * p).round() as usize]
    }
}

pub(super) fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(bench(args))?;
    print_report(args, &results);
    Ok(ExitCode::SUCCESS)
}

async fn bench(args: &BenchArgs) -> anyhow::Result<Vec<Figures>> {
    let key = Arc::new(read_key(&args.key)?);
    let gateway: http::Uri = args.gateway.parse().context("--gateway is not a URL")?;
    let setup = Http::connect(args, &gateway, false).await?;
    prepare(&setup, &key, args).await?;
    let mut results = Vec::new();
    for (name, http1) in [("gateway HTTP/2", false), ("gateway HTTP/1.1", true)] {
        results.push(load_http(args, &gateway, &key, name, http1).await?);
    }
    if let Some(addr) = &args.storaged {
        results.push(load_grpc(args, addr).await?);
    }
    Ok(results)
}

/// Creates the database, table and documents the load reads and writes.
async fn prepare(http: &Http, key: &SecretKey, args: &BenchArgs) -> anyhow::Result<()> {
    for path in [
        format!("/v1/dbs/{DB}"),
        format!("/v1/dbs/{DB}/tables/{TABLE}"),
    ] {
        let status = http
            .send(key, &args.partner, "PUT", &path, Vec::new())
            .await?;
        if !(status.is_success() || status == http::StatusCode::CONFLICT) {
            bail!("setting up {path}: gateway answered {status}");
        }
    }
    for i in 0..KEYS {
        let status = http
            .send(key, &args.partner, "PUT", &doc_path(i), doc_body(i))
            .await?;
        if !status.is_success() {
            bail!("writing document {i}: gateway answered {status}");
        }
    }
    Ok(())
}

fn doc_path(i: usize) -> String {
    format!("/v1/dbs/{DB}/tables/{TABLE}/docs/k{i:05}")
}

fn doc_body(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"text\":\"{}\"}}", "x".repeat(100)).into_bytes()
}

/// Runs `concurrency` workers until the deadline; each returns its latencies and errors.
async fn drive<F, Fut>(name: &'static str, args: &BenchArgs, one: F) -> Figures
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let started = Instant::now();
    let workers = args.concurrency as usize;
    // With --rate, worker w's k-th request is due at (k * workers + w) / rate.
    let interval = args
        .rate
        .map(|rate| Duration::from_secs_f64(workers as f64 / rate as f64));
    let workers: Vec<_> = (0..workers)
        .map(|w| {
            let one = one.clone();
            tokio::spawn(async move {
                let (mut lat, mut errors, mut i) = (Vec::new(), 0usize, w);
                let mut due =
                    interval.map(|every| started + every.mul_f64(w as f64 / workers as f64));
                while Instant::now() < deadline {
                    if let (Some(at), Some(every)) = (due.as_mut(), interval) {
                        tokio::time::sleep_until((*at).into()).await;
                        *at += every;
                        if Instant::now() >= deadline {
                            break;
                        }
                    }
                    let t = Instant::now();
                    if one(i % KEYS).await {
                        lat.push(t.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                    i += 7;
                }
                (lat, errors)
            })
        })
        .collect();
    let mut figures = Figures {
        name,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for w in workers {
        if let Ok((lat, errors)) = w.await {
            figures.ok += lat.len();
            figures.errors += errors;
            figures.latencies_us.extend(lat);
        }
    }
    figures.elapsed = started.elapsed();
    figures.latencies_us.sort_unstable();
    figures
}

async fn load_http(
    args: &BenchArgs,
    gateway: &http::Uri,
    key: &Arc<SecretKey>,
    name: &'static str,
    http1: bool,
) -> anyhow::Result<Figures> {
    // HTTP/2 multiplexes every worker on one connection; HTTP/1.1 needs one per worker.
    let pool: Vec<Arc<Http>> = if http1 {
        let mut v = Vec::new();
        for _ in 0..args.concurrency {
            v.push(Arc::new(Http::connect(args, gateway, true).await?));
        }
        v
    } else {
        vec![Arc::new(Http::connect(args, gateway, false).await?)]
    };
    let shared = Arc::new(BenchShared {
        key: key.clone(),
        partner: args.partner.clone(),
        op: args.op,
    });
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    Ok(drive(name, args, move |i| {
        let conn = pool[next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % pool.len()].clone();
        let shared = shared.clone();
        async move {
            let (method, body) = match shared.op {
                Op::Get => ("GET", Vec::new()),
                Op::Put => ("PUT", doc_body(i)),
            };
            matches!(conn.send(&shared.key, &shared.partner, method, &doc_path(i), body).await, Ok(s) if s.is_success())
        }
    })
    .await)
}

async fn load_grpc(args: &BenchArgs, addr: &str) -> anyhow::Result<Figures> {
    let (ca, cert, key) = (
        args.certs.join(files::CA_CERT),
        args.certs.join(files::GATEWAY_CLIENT_CERT),
        args.certs.join(files::GATEWAY_CLIENT_KEY),
    );
    let tls = ClientTls {
        ca: &ca,
        cert: &cert,
        key: &key,
        server_name: &args.storaged_name,
    };
    let endpoint = upstream::endpoint(addr, tls).map_err(anyhow::Error::msg)?;
    let channel = endpoint.connect().await?;
    let client = StorageClient::new(channel);
    let op = args.op;
    Ok(drive("storaged gRPC (direct)", args, move |i| {
        let mut client = client.clone();
        async move {
            let table = Some(pb::TableRef {
                db: DB.into(),
                table: TABLE.into(),
            });
            let key = format!("k{i:05}");
            match op {
                Op::Get => client.get(pb::GetRequest { table, key }).await.is_ok(),
                Op::Put => client
                    .put(pb::PutRequest {
                        table,
                        key,
                        value: doc_body(i),
                        precondition: None,
                    })
                    .await
                    .is_ok(),
            }
        }
    })
    .await)
}

struct BenchShared {
    key: Arc<SecretKey>,
    partner: String,
    op: Op,
}

fn authority(uri: &http::Uri) -> anyhow::Result<String> {
    Ok(uri
        .authority()
        .context("--gateway has no host")?
        .as_str()
        .to_owned())
}

/// One client connection to the gateway over TLS.
struct Http {
    authority: String,
    conn: Conn,
}

enum Conn {
    H1(tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

impl Http {
    async fn connect(args: &BenchArgs, gateway: &http::Uri, http1: bool) -> anyhow::Result<Self> {
        let authority = authority(gateway)?;
        let host = gateway.host().context("--gateway has no host")?.to_owned();
        let port = gateway.port_u16().unwrap_or(443);
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .with_context(|| format!("connecting to {authority}"))?;
        tcp.set_nodelay(true)?;
        let ca = args.certs.join(files::CA_CERT);
        let io = hyper_util::rt::TokioIo::new(
            super::request::tls_connect(&ca, &host, tcp, http1).await?,
        );
        let conn = if http1 {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::spawn(conn);
            Conn::H1(tokio::sync::Mutex::new(sender))
        } else {
            let executor = hyper_util::rt::TokioExecutor::new();
            let (sender, conn) = hyper::client::conn::http2::handshake(executor, io).await?;
            tokio::spawn(conn);
            Conn::H2(sender)
        };
        Ok(Self { authority, conn })
    }

    /// Signs and sends one request; returns the status once the body has been read.
    async fn send(
        &self,
        key: &SecretKey,
        partner: &str,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<http::StatusCode> {
        let request = signed_request(key, partner, &self.authority, method, path, body)?;
        let response = match &self.conn {
            Conn::H2(sender) => sender.clone().send_request(request).await?,
            Conn::H1(sender) => {
                let mut sender = sender.lock().await;
                sender.ready().await?;
                sender.send_request(request).await?
            }
        };
        let status = response.status();
        response.into_body().collect().await?;
        Ok(status)
    }
}

/// A request signed as DESIGN §3.2 describes (a fresh request id and timestamp each time).
fn signed_request(
    key: &SecretKey,
    partner: &str,
    authority: &str,
    method: &str,
    path: &str,
    body: Vec<u8>,
) -> anyhow::Result<http::Request<Full<Bytes>>> {
    let timestamp = Timestamp::now().format();
    let request_id = uuid::Uuid::new_v4().to_string();
    let fields = AuthFields::new(partner, &request_id, &timestamp)?;
    let parts = RequestParts {
        method,
        host: authority,
        path,
        query: "",
        body: BodyDigest::of(&body),
    };
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("https://{authority}{path}"))
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json");
    for (name, value) in signing::signature_headers(key, &parts, &fields, None)? {
        request = request.header(name, value);
    }
    Ok(request.body(Full::new(Bytes::from(body)))?)
}

fn print_report(args: &BenchArgs, results: &[Figures]) {
    let rate = args
        .rate
        .map_or("closed loop".to_owned(), |r| format!("rate={r}/s"));
    println!(
        "op={:?} concurrency={} duration={}s {rate}",
        args.op, args.concurrency, args.duration
    );
    println!(
        "{:<24} {:>10} {:>8} {:>12} {:>10} {:>10}",
        "target", "ok", "errors", "req/s", "p50 µs", "p99 µs"
    );
    for f in results {
        println!(
            "{:<24} {:>10} {:>8} {:>12.0} {:>10} {:>10}",
            f.name,
            f.ok,
            f.errors,
            f.rate(),
            f.percentile(0.5),
            f.percentile(0.99)
        );
    }
    let Some(base) = results.iter().find(|f| f.name.starts_with("storaged")) else {
        return;
    };
    for f in results.iter().filter(|f| f.name.starts_with("gateway")) {
        println!(
            "{}: throughput {:.2}x of direct storaged, p50 latency {:.2}x, p99 latency {:.2}x",
            f.name,
            f.rate() / base.rate().max(f64::MIN_POSITIVE),
            f.percentile(0.5) as f64 / base.percentile(0.5).max(1) as f64,
            f.percentile(0.99) as f64 / base.percentile(0.99).max(1) as f64,
        );
    }
}
