//! `photonctl apikey new`: a new API key. The bearer token (with its secret) is printed once,
//! on stdout; only the secret's SHA-256 goes into the policy directory, printed on stderr as
//! the `api_keys.toml` entry to add.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use photondb_gateway::pipeline::auth::api_key;
use rand::RngCore as _;
use zeroize::Zeroizing;

use super::EX_USAGE;

#[derive(Debug, Subcommand)]
pub(super) enum ApikeyCommand {
    /// Create an API key from 32 bytes of the system's CSPRNG.
    ///
    /// Prints the token `pdb_<ID>_<secret>` on stdout, once: it is not stored anywhere, so
    /// keep it now. Prints on stderr the `[[api_key]]` entry (with `secret_sha256`) to add to
    /// `api_keys.toml` in the gateway's policy directory.
    New {
        /// The key id: 1-64 characters of [a-z0-9-].
        #[arg(long, value_name = "ID")]
        id: String,
        /// The principal the key stands for: `key:<name>` or `partner:<id>` (default
        /// `key:<ID>`).
        #[arg(long, value_name = "PRINCIPAL")]
        principal: Option<String>,
    },
}

pub(super) fn run(cmd: &ApikeyCommand) -> anyhow::Result<ExitCode> {
    let ApikeyCommand::New { id, principal } = cmd;
    if !api_key::is_key_id(id) {
        eprintln!(
            "photonctl: key id {id:?} is not 1-{} characters of [a-z0-9-]",
            api_key::MAX_KEY_ID
        );
        return Ok(ExitCode::from(EX_USAGE));
    }
    let principal = principal.clone().unwrap_or_else(|| format!("key:{id}"));
    let mut secret = Zeroizing::new([0u8; api_key::SECRET_BYTES]);
    rand::rngs::OsRng
        .try_fill_bytes(&mut secret[..])
        .context("reading the system's random source")?;
    let token = api_key::token(id, &secret);
    eprintln!("add to api_keys.toml in the policy directory (the secret is not in it):");
    eprintln!();
    eprintln!(
        "{}",
        entry(id, &principal, &api_key::secret_sha256_hex(&secret))
    );
    eprintln!("the key's bearer token, shown only now (Authorization: Bearer <token>):");
    println!("{}", token.as_str());
    Ok(ExitCode::SUCCESS)
}

/// The `[[api_key]]` table for `api_keys.toml`; strings quoted by the TOML library.
fn entry(id: &str, principal: &str, secret_sha256: &str) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[[api_key]]\nid = {}\nprincipal = {}\nsecret_sha256 = {}\n",
        quote(id),
        quote(principal),
        quote(secret_sha256)
    )
}
