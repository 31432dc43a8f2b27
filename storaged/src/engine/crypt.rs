//! Encryption of backups and archived segments to age recipients (X25519 public keys, the
//! `age1...` strings `age-keygen` prints). storaged only ever holds public keys; restore reads
//! the identity (private key) file the operator passes on its command line.
//!
//! age authenticates every 64 KiB chunk and the end of the stream, so tampered, truncated or
//! reordered ciphertext fails to decrypt: it is refused, never restored.

use std::io::{self, BufReader, Read, Write};
use std::path::Path;

/// Public keys to encrypt to (at least one; none means no encryption).
#[derive(Clone)]
pub struct Recipients(Vec<age::x25519::Recipient>);

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Recipients({} keys)", self.0.len())
    }
}

impl Recipients {
    /// Parses `age1...` public keys; names the first that is not one.
    pub fn parse(keys: &[String]) -> Result<Recipients, String> {
        let parsed = keys.iter().map(|key| {
            key.trim()
                .parse::<age::x25519::Recipient>()
                .map_err(|e| format!("{key:?} is not an age X25519 public key (age1...): {e}"))
        });
        let parsed = parsed.collect::<Result<Vec<_>, String>>()?;
        if parsed.is_empty() {
            return Err("no age recipients given".into());
        }
        Ok(Recipients(parsed))
    }

    /// A writer that encrypts into `out`; `finish` it, or the stream has no authenticated end.
    pub(crate) fn encrypt<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let recipients = self.0.iter().map(|r| r as &dyn age::Recipient);
        let encryptor = age::Encryptor::with_recipients(recipients).map_err(io::Error::other)?;
        encryptor.wrap_output(out)
    }
}

/// Private keys read from an age identity file, for restore.
pub struct Identities(Vec<Box<dyn age::Identity>>);

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identities({} keys)", self.0.len())
    }
}

impl Identities {
    /// Reads an identity file (`AGE-SECRET-KEY-1...` lines, `#` comments).
    pub fn load(path: &Path) -> Result<Identities, String> {
        let file = std::fs::File::open(path)
            .map_err(|e| format!("cannot read the identity file {}: {e}", path.display()))?;
        let parsed = age::IdentityFile::from_buffer(BufReader::new(file))
            .and_then(|f| f.into_identities().map_err(io::Error::other))
            .map_err(|e| format!("{} is not an age identity file: {e}", path.display()))?;
        if parsed.is_empty() {
            return Err(format!("{} holds no age identity", path.display()));
        }
        Ok(Identities(parsed))
    }

    /// A reader of the plaintext of the age file `input`; a wrong key fails here, tampering
    /// fails when the damaged chunk is read.
    pub(crate) fn decrypt<R: Read>(&self, input: R) -> io::Result<impl Read> {
        let decryptor = age::Decryptor::new(input).map_err(io::Error::other)?;
        let identities = self.0.iter().map(|i| &**i as &dyn age::Identity);
        decryptor.decrypt(identities).map_err(io::Error::other)
    }
}

/// A fresh key pair as age-keygen writes it: (identity file text, public key). For tests and
/// for `photondb-storaged keygen`-style tooling; storaged itself never needs a private key.
pub fn generate_identity() -> (String, String) {
    use age::secrecy::ExposeSecret;
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let secret = identity.to_string();
    let text = format!("# public key: {public}\n{}\n", secret.expose_secret());
    (text, public)
}
