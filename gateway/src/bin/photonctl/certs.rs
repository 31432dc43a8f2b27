//! `photonctl certs`: the internal PKI for a deployment.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use photondb_pki::{self as certs, CertsSpec, files};

#[derive(Debug, Subcommand)]
pub(super) enum CertsCommand {
    /// Create a CA, storaged's server certificate, the gateway's client certificate (its mTLS
    /// identity towards storaged) and the gateway's public TLS certificate.
    ///
    /// Private keys are written with mode 0600; existing files are never overwritten. Keep
    /// ca-key.pem offline once the leaves are issued.
    Init {
        /// Directory to write into (created if missing).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// A DNS name or IP address for storaged's certificate (repeatable).
        #[arg(long = "storaged-name", value_name = "NAME", default_values_t = CertsSpec::default().storaged_names)]
        storaged_names: Vec<String>,
        /// A DNS name or IP address for the gateway's public certificate (repeatable).
        #[arg(long = "gateway-name", value_name = "NAME", default_values_t = CertsSpec::default().gateway_names)]
        gateway_names: Vec<String>,
        /// The gateway's identity (URI SAN) on its client certificate.
        #[arg(long, value_name = "URI", default_value = certs::DEFAULT_GATEWAY_IDENTITY)]
        gateway_identity: String,
        /// Lifetime of the leaf certificates in days (the CA gets ten times as long).
        #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=3650))]
        days: i64,
    },
}

pub(super) fn run(cmd: &CertsCommand) -> anyhow::Result<ExitCode> {
    let CertsCommand::Init {
        out,
        storaged_names,
        gateway_names,
        gateway_identity,
        days,
    } = cmd;
    let spec = CertsSpec {
        storaged_names: storaged_names.clone(),
        gateway_identity: gateway_identity.clone(),
        gateway_names: gateway_names.clone(),
        validity_days: *days,
    };
    certs::generate(&spec)?.write_to(out)?;
    eprintln!(
        "wrote {}, {}, {}, {} and their keys to {}",
        files::CA_CERT,
        files::STORAGED_CERT,
        files::GATEWAY_CLIENT_CERT,
        files::GATEWAY_CERT,
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}
