//! Key and signature types: the secret key has no `Debug` and is zeroised on drop.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use super::SigningError;

/// An Ed25519 private key. Deliberately not `Debug`, `Clone` or `Display`.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut rand::rngs::OsRng))
    }

    /// The key whose 32-byte secret seed is `seed` (RFC 8032).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(seed))
    }

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, ed25519_dalek::pkcs8::Error> {
        SigningKey::from_pkcs8_pem(pem).map(Self)
    }

    /// The key as PKCS#8 PEM; the returned string zeroises itself on drop.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, ed25519_dalek::pkcs8::Error> {
        self.0.to_pkcs8_pem(LineEnding::LF)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl PublicKey {
    /// Parses standard base64 of the 32-byte key; weak (small-order) keys are refused.
    pub fn from_base64(text: &str) -> Result<Self, SigningError> {
        let bytes: [u8; 32] = STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SigningError::BadPublicKey)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SigningError::BadPublicKey)?;
        if key.is_weak() {
            return Err(SigningError::BadPublicKey);
        }
        Ok(Self(key))
    }

    /// Standard base64 of the 32-byte key.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    pub(crate) fn verify_strict(
        &self,
        message: &[u8],
        signature: &Signature,
    ) -> Result<(), SigningError> {
        let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0
            .verify_strict(message, &sig)
            .map_err(|_| SigningError::SignatureInvalid)
    }
}

/// A 64-byte Ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub(crate) [u8; 64]);

impl std::fmt::Debug for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signature(..)")
    }
}

impl Signature {
    /// Parses `X-Signature`: standard base64 (padded) of exactly 64 bytes.
    pub fn from_base64(text: &str) -> Result<Self, SigningError> {
        STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .map(Self)
            .ok_or(SigningError::BadSignatureEncoding)
    }

    /// The `X-Signature` header value.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}
