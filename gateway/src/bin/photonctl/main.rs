//! photonctl: operator and partner tooling. Each subcommand is one file; this one holds the
//! command line and dispatch.
// A load generator and a signer measure and stamp real time.
#![allow(clippy::disallowed_methods)]

mod apikey;
mod audit;
mod bench;
mod certs;
mod keygen;
mod ops;
mod policy;
mod request;
mod sign;
mod usage;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// PhotonDB's command-line tool: signing keys, signed requests, certificates, load tests.
#[derive(Debug, Parser)]
#[command(name = "photonctl", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create an Ed25519 key pair for signing requests.
    ///
    /// Writes the private key as PKCS#8 PEM (mode 0600; an existing file is never
    /// overwritten) and prints the public key (standard base64) on stdout, for the partner's
    /// entry in the gateway's policy directory.
    Keygen {
        /// Where to write the private key.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Print the signature headers for a request (DESIGN §3.2), without sending it.
    Sign(sign::SignArgs),
    /// Sign a request, send it, and print the status and the response body.
    ///
    /// Exits 0 for a 2xx response, 1 for any other status, 2 if no response was received.
    Request(request::RequestArgs),
    /// Bounded-time load against the gateway (HTTP/2 and HTTP/1.1) and, as the baseline in
    /// the same run, straight against storaged's gRPC port; reports req/s, p50/p99 and the
    /// gateway's overhead as ratios.
    Bench(bench::BenchArgs),
    /// Certificates for the internal CA, storaged and the gateway.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// The policy directory: validate it (`check`) or show one decision (`explain`).
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// API keys: `new` makes a key and prints its token once.
    #[command(subcommand)]
    Apikey(apikey::ApikeyCommand),
    /// Audit logs: `verify` checks their chain, anchors and anchor copy.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Incident switches of a gateway (read-only, partners-only, closed, suspend) and its
    /// status.
    #[command(subcommand)]
    Ops(ops::OpsCommand),
    /// Usage per principal and hour (requests by operation, bytes, refusals, quota used),
    /// merged from one or more gateways.
    Usage(usage::UsageArgs),
}

/// Usage errors (sysexits EX_USAGE), for every subcommand.
const EX_USAGE: u8 = 64;

/// Runs one parsed command line; errors are printed here and turned into an exit code.
fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version are not errors; a bad command line is EX_USAGE.
            let code = if err.use_stderr() { EX_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    let outcome = match cli.command {
        Command::Keygen { out } => keygen::run(&out),
        Command::Sign(args) => sign::run(&args),
        Command::Request(args) => request::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Certs(cmd) => certs::run(&cmd),
        Command::Policy(cmd) => policy::run(&cmd),
        Command::Apikey(cmd) => apikey::run(&cmd),
        Command::Audit(cmd) => audit::run(&cmd),
        Command::Ops(cmd) => ops::run(&cmd),
        Command::Usage(args) => usage::run(&args),
    };
    match outcome {
        Ok(code) => code,
        Err(err) => {
            eprintln!("photonctl: {err:#}");
            ExitCode::from(2)
        }
    }
}
