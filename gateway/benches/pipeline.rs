//! What the security pipeline costs per request, in process: signed REST GETs through
//! [`Pipeline::serve`] of a dev-mode gateway (the proxy path's own steps only) and of a gateway
//! with the full pipeline (native Ed25519 signature, sled replay store, plan rate limit and
//! daily quota, policy), both built from a real config and the repository's `policies/`, both
//! forwarding to an in-process upstream that answers at once — so the figure is the gateway's
//! work alone, free of the network and of storaged. Measured beside one `verify_strict` in the
//! same run, as the issue's target reads: full − dev ≤ 1.2 × verify_strict.
//!
//! `cargo bench -p photondb-gateway --bench pipeline [-- ROUNDS [dev|full|verify]]`
//!
//! With a mode, only that part runs: `scripts/bench-pipeline --callgrind` counts each one's
//! instructions under valgrind (`measured_*` only), which a shared machine cannot disturb.
// A timing benchmark reads the real clock and prints its figures.
#![allow(clippy::disallowed_methods, clippy::print_stdout)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use photondb_gateway::config::GatewayConfig;
use photondb_gateway::operation::{Operation, Reply};
use photondb_gateway::pipeline::body::{BodyBroken, BodySource};
use photondb_gateway::pipeline::cleared::Cleared;
use photondb_gateway::pipeline::gate::Admission;
use photondb_gateway::pipeline::head::RequestHead;
use photondb_gateway::pipeline::{Outcome, Pipeline};
use photondb_gateway::server::Gateway;
use photondb_gateway::upstream::Forward;
use photondb_pki::files;
use photondb_proto::signing::{self, AuthFields, BodyDigest, RequestParts, SecretKey, Timestamp};
use photondb_proto::v1 as pb;

const HOST: &str = "db.example.com";
const PARTNER: &str = "bench";
const DEFAULT_ROUNDS: usize = 20_000;

/// storaged's part, answered at once: every GET finds a 100-byte document.
struct InstantUpstream;

#[async_trait]
impl Forward for InstantUpstream {
    async fn call(
        &self,
        op: &Operation,
        _: &Cleared,
        _: &Admission<'_>,
    ) -> Result<Reply, tonic::Status> {
        let Operation::Get { key, .. } = op else {
            return Err(tonic::Status::unimplemented("the bench sends GETs"));
        };
        Ok(Reply::Get(pb::GetResponse {
            document: Some(pb::Document {
                key: key.as_str().to_owned(),
                value: format!("{{\"text\":\"{}\"}}", "x".repeat(89)).into_bytes(),
                version: 1,
            }),
        }))
    }
}

/// A request without a body.
struct NoBody(bool);

#[async_trait]
impl BodySource for NoBody {
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, BodyBroken> {
        self.0 = true;
        Ok(None)
    }

    fn is_done(&mut self) -> bool {
        self.0
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rounds = match args.first() {
        Some(n) => n.parse()?,
        None => DEFAULT_ROUNDS,
    };
    let only = args.get(1).map(String::as_str);
    let work = tempfile::tempdir()?;
    let key = SecretKey::from_seed(&[7; 32]);
    write_policies(work.path(), &key)?;
    photondb_pki::generate(&photondb_pki::CertsSpec::default())?
        .write_to(&work.path().join("certs"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut figures = Vec::new();
    if only.is_none_or(|m| m == "verify") {
        figures.push(("verify_strict", verify_strict(&key, rounds)));
    }
    for mode in ["dev", "full"] {
        if only.is_some_and(|m| m != mode) {
            continue;
        }
        let gateway = Gateway::with_upstream(config(work.path(), mode)?, Arc::new(InstantUpstream))
            .map_err(|e| anyhow::anyhow!("{mode} gateway: {}", e.join("; ")))?;
        let pipeline = gateway.pipeline().clone();
        // Warm-up, and a check that the requests are served, not refused.
        let warm = runtime.block_on(serve_all(&pipeline, &heads(&key, rounds / 10 + 1)));
        anyhow::ensure!(
            warm.iter().all(|o| o.answer.status.is_success()),
            "{mode}: {:?}",
            warm.first()
        );
        let heads = heads(&key, rounds);
        let started = Instant::now();
        let outcomes = measured_serve(&runtime, &pipeline, &heads);
        let per_request = started.elapsed().as_secs_f64() * 1e6 / rounds as f64;
        anyhow::ensure!(
            outcomes.iter().all(|o| o.answer.status.is_success()),
            "{mode} refused"
        );
        figures.push((mode, per_request));
    }
    for (name, us) in &figures {
        println!("{name:<14} {us:8.2} µs per call");
    }
    let get = |n: &str| figures.iter().find(|(m, _)| *m == n).map(|(_, us)| *us);
    if let (Some(verify), Some(dev), Some(full)) = (get("verify_strict"), get("dev"), get("full")) {
        let extra = full - dev;
        println!(
            "pipeline cost beyond dev mode: {extra:.1} µs = {:.2}x verify_strict (target <= 1.2x; \
             everything but the signature: {:.2}x, target < 0.2x)",
            extra / verify,
            (extra - verify).max(0.0) / verify
        );
    }
    Ok(())
}

/// The measured requests (a function of their own, which callgrind's `--toggle-collect`
/// counts alone).
#[inline(never)]
fn measured_serve(
    runtime: &tokio::runtime::Runtime,
    pipeline: &Pipeline,
    heads: &[RequestHead],
) -> Vec<Outcome> {
    runtime.block_on(serve_all(pipeline, heads))
}

async fn serve_all(pipeline: &Pipeline, heads: &[RequestHead]) -> Vec<Outcome> {
    let client = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let mut outcomes = Vec::with_capacity(heads.len());
    for head in heads {
        outcomes.push(
            pipeline
                .serve(black_box(head), &mut NoBody(false), client)
                .await,
        );
    }
    outcomes
}

/// `n` signed GETs, each with its own request id (signing is not part of the measurement).
fn heads(key: &SecretKey, n: usize) -> Vec<RequestHead> {
    let timestamp = Timestamp::now().format();
    (0..n)
        .map(|i| {
            let path = format!("/v1/dbs/bench/tables/docs/docs/k{:05}", i % 1000);
            let request_id = uuid::Uuid::new_v4().to_string();
            let fields = AuthFields::new(PARTNER, &request_id, &timestamp).expect("fields");
            let parts = RequestParts {
                method: "GET",
                host: HOST,
                path: &path,
                query: "",
                body: BodyDigest::of(b""),
            };
            let mut headers = HeaderMap::new();
            headers.insert(http::header::HOST, HeaderValue::from_static(HOST));
            for (name, value) in
                signing::signature_headers(key, &parts, &fields, None).expect("sign")
            {
                headers.insert(
                    HeaderName::from_static(name),
                    HeaderValue::from_str(&value).expect("value"),
                );
            }
            let uri: Uri = format!("https://{HOST}{path}").parse().expect("uri");
            RequestHead::new(Method::GET, &uri, headers, true)
        })
        .collect()
}

fn verify_strict(key: &SecretKey, rounds: usize) -> f64 {
    let public = key.public_key();
    let message = [b'm'; 300];
    let signature = key.sign(&message);
    let check = || {
        public
            .verify_strict(black_box(&message), black_box(&signature))
            .expect("valid")
    };
    for _ in 0..rounds / 10 {
        check();
    }
    let started = Instant::now();
    measured_verify(rounds, check);
    started.elapsed().as_secs_f64() * 1e6 / rounds as f64
}

/// The measured verifications (see [`measured_serve`]).
#[inline(never)]
fn measured_verify(rounds: usize, check: impl Fn()) {
    for _ in 0..rounds {
        check();
    }
}

/// The repository's policies, plus the bench partner on an unlimited plan, `admin` on `*`.
fn write_policies(work: &Path, key: &SecretKey) -> anyhow::Result<()> {
    let dir = work.join("policies");
    std::fs::create_dir_all(&dir)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    for entry in std::fs::read_dir(repo)? {
        let entry = entry?;
        std::fs::copy(entry.path(), dir.join(entry.file_name()))?;
    }
    let append = |file: &str, text: String| -> anyhow::Result<()> {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(file))?;
        Ok(f.write_all(text.as_bytes())?)
    };
    append(
        "plans.toml",
        "\n[[plan]]\nname = \"bench\"\nrate_per_sec = 1000000\nburst = 1000000\ndaily_quota = 1000000000\n".into(),
    )?;
    append(
        "partners.toml",
        format!(
            "\n[[partner]]\nid = \"{PARTNER}\"\nplan = \"bench\"\n\n[[partner.key]]\nversion = 1\npublic_key = \"{}\"\n",
            key.public_key().to_base64()
        ),
    )?;
    append(
        "bindings.toml",
        format!(
            "\n[[binding]]\nprincipal = \"partner:{PARTNER}\"\nrole = \"admin\"\nresources = [\"*\"]\n"
        ),
    )
}

/// A gateway config on a free loopback port; `dev` or `full`.
fn config(work: &Path, mode: &str) -> anyhow::Result<GatewayConfig> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let state = work.join(format!("state-{mode}"));
    let text = format!(
        r#"
dev_mode = {dev}
listen = "127.0.0.1:{port}"
hosts = ["{HOST}"]
state_dir = "{state}"

[policy]
dir = "{policies}"

[tls]
cert = "{certs}/{gw_cert}"
key = "{certs}/{gw_key}"

# Never contacted: the bench's upstream is in process.
[upstream]
address = "127.0.0.1:1"
ca = "{certs}/{ca}"
client_cert = "{certs}/{client_cert}"
client_key = "{certs}/{client_key}"

[limits]
ip_rate_per_sec = 0
ip_burst = 0
"#,
        dev = mode == "dev",
        state = state.display(),
        policies = work.join("policies").display(),
        certs = work.join("certs").display(),
        gw_cert = files::GATEWAY_CERT,
        gw_key = files::GATEWAY_KEY,
        ca = files::CA_CERT,
        client_cert = files::GATEWAY_CLIENT_CERT,
        client_key = files::GATEWAY_CLIENT_KEY,
    );
    GatewayConfig::from_toml(&text, &Default::default())
        .map_err(|e| anyhow::anyhow!("{mode} config: {}", e.0.join("; ")))
}
