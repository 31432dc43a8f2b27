//! `photonctl keygen`: a new Ed25519 signing key.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use photondb_proto::signing::SecretKey;

use photondb_pki::write_new;

pub(super) fn run(out: &Path) -> anyhow::Result<ExitCode> {
    let key = SecretKey::generate();
    let pem = key.to_pkcs8_pem().context("encoding the private key")?;
    write_new(out, pem.as_bytes(), 0o600)?;
    eprintln!(
        "wrote private key to {} (mode 0600); public key:",
        out.display()
    );
    println!("{}", key.public_key().to_base64());
    Ok(ExitCode::SUCCESS)
}
