//! `photondb-gateway --config FILE`: parse arguments, set up tracing, load and validate every
//! piece of config before binding a port (exit 64 listing every error), then serve.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use photondb_gateway::config::{GatewayConfig, process_env};
use photondb_gateway::server::Gateway;

/// The PhotonDB public gateway.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The gateway's TOML config file.
    #[arg(long, short)]
    config: PathBuf,
}

/// Usage and configuration errors (unreadable or invalid certificates included) exit 64,
/// EX_USAGE in sysexits.h, as every PhotonDB binary does: the operator must fix the
/// invocation. (EX_CONFIG would be 78; one code for "fix what you gave me" is simpler.)
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing();
    let gateway = GatewayConfig::load(&args.config, &process_env())
        .map_err(|e| e.0)
        .and_then(Gateway::build);
    match gateway {
        Ok(g) => g.run_forever(),
        Err(errors) => {
            for e in errors {
                eprintln!("config error: {e}");
            }
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The one rule of both daemons (`photondb_proto::logging`): `RUST_LOG`, else
/// `PHOTONDB_LOGGING`, else `info`; JSON lines with `PHOTONDB_LOG_FORMAT=json`.
fn init_tracing() {
    let env = |name: &str| std::env::var(name).ok();
    let filter = tracing_subscriber::EnvFilter::new(photondb_proto::logging::filter(env));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if photondb_proto::logging::json(env) {
        lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        lines.init();
    }
}
