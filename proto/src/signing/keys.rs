//! Key and signature types: the secret key has no `Debug` and is zeroised on drop. Keys are
//! read and written in the forms other tools use: PKCS#8 v1 private keys (RFC 8410, what
//! `openssl genpkey -algorithm ed25519` writes), raw base64 or SPKI PEM public keys.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, KeypairBytes, spki::der::pem::LineEnding,
};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use zeroize::Zeroize as _;

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

    /// Reads a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`), either form: v1
    /// (RFC 8410, the seed alone) or v2 (with the public key, which must match the seed).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, ed25519_dalek::pkcs8::Error> {
        SigningKey::from_pkcs8_pem(pem).map(Self)
    }

    /// The key as PKCS#8 v1 PEM (RFC 8410 `OneAsymmetricKey` version 0, no public key): the
    /// form OpenSSL writes and OpenSSL 3 and Python `cryptography` read; the v2 form with the
    /// public key inside is refused by both. The returned string zeroises itself on drop.
    pub fn to_pkcs8_pem(&self) -> Result<zeroize::Zeroizing<String>, ed25519_dalek::pkcs8::Error> {
        let mut v1 = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        let pem = v1.to_pkcs8_pem(LineEnding::LF);
        // KeypairBytes zeroises itself only with a feature of `ed25519` we do not control.
        v1.secret_key.zeroize();
        pem
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs raw bytes. The native scheme signs through [`super::sign`], which builds its
    /// message; this is for other message formats over the same keys (RFC 9421 signature
    /// bases, test signers).
    pub fn sign(&self, message: &[u8]) -> Signature {
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
    /// The 32-byte key; points off the curve and weak (small-order) keys are refused.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, SigningError> {
        let key = VerifyingKey::from_bytes(bytes).map_err(|_| SigningError::BadPublicKey)?;
        if key.is_weak() {
            return Err(SigningError::BadPublicKey);
        }
        Ok(Self(key))
    }

    /// Parses standard base64 of the 32-byte key; weak (small-order) keys are refused.
    pub fn from_base64(text: &str) -> Result<Self, SigningError> {
        let bytes: [u8; 32] = STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SigningError::BadPublicKey)?;
        Self::from_bytes(&bytes)
    }

    /// Parses an SPKI PEM public key (`-----BEGIN PUBLIC KEY-----`, what
    /// `openssl pkey -pubout` writes); weak keys are refused.
    pub fn from_spki_pem(pem: &str) -> Result<Self, SigningError> {
        let key = VerifyingKey::from_public_key_pem(pem.trim())
            .map_err(|_| SigningError::BadPublicKey)?;
        Self::from_bytes(key.as_bytes())
    }

    /// A public key as an operator writes it: SPKI PEM if it has a PEM header, else standard
    /// base64 of the raw 32 bytes.
    pub fn parse(text: &str) -> Result<Self, SigningError> {
        if text.trim_start().starts_with("-----BEGIN") {
            Self::from_spki_pem(text)
        } else {
            Self::from_base64(text)
        }
    }

    /// The raw 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Standard base64 of the 32-byte key.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// Verifies a signature over raw bytes strictly: non-canonical signatures (S >= L) and
    /// small-order components fail. The native scheme verifies through [`super::verify`].
    pub fn verify_strict(&self, message: &[u8], signature: &Signature) -> Result<(), SigningError> {
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

    /// A signature from its 64 raw bytes (RFC 9421 carries them as a byte sequence).
    pub fn from_bytes(bytes: [u8; 64]) -> Self {
        Self(bytes)
    }

    /// The 64 raw bytes.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;

    use super::*;

    /// `SecretKey::from_seed(&[7; 32])` as PKCS#8 v1, written by Python `cryptography`
    /// (and byte-identical to `openssl genpkey` output for that seed).
    const SEED7_V1: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcH
-----END PRIVATE KEY-----
";
    const SEED7_PUBLIC: &str = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw=";

    #[test]
    fn private_keys_are_written_as_pkcs8_v1() {
        let pem = SecretKey::from_seed(&[7; 32]).to_pkcs8_pem().expect("pem");
        assert_eq!(pem.as_str(), SEED7_V1);
    }

    #[test]
    fn private_keys_are_read_in_both_pkcs8_forms() {
        let v1 = SecretKey::from_pkcs8_pem(SEED7_V1).expect("v1");
        assert_eq!(v1.public_key().to_base64(), SEED7_PUBLIC);

        let public = SecretKey::from_seed(&[7; 32]).public_key().to_bytes();
        let v2 = KeypairBytes {
            secret_key: [7; 32],
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(public)),
        };
        let v2_pem = v2.to_pkcs8_pem(LineEnding::LF).expect("v2 pem");
        assert_ne!(v2_pem.as_str(), SEED7_V1);
        let read = SecretKey::from_pkcs8_pem(&v2_pem).expect("v2");
        assert_eq!(read.public_key().to_base64(), SEED7_PUBLIC);

        // A v2 key whose public key is not the seed's is refused.
        let mismatched = KeypairBytes {
            secret_key: [7; 32],
            public_key: Some(ed25519_dalek::pkcs8::PublicKeyBytes(
                SecretKey::from_seed(&[8; 32]).public_key().to_bytes(),
            )),
        };
        let pem = mismatched.to_pkcs8_pem(LineEnding::LF).expect("pem");
        assert!(SecretKey::from_pkcs8_pem(&pem).is_err());
    }

    #[test]
    fn public_keys_parse_from_base64_or_spki_pem() {
        let key = SecretKey::from_seed(&[7; 32]).public_key();
        let pem = key.0.to_public_key_pem(LineEnding::LF).expect("spki");
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::parse(&pem), Ok(key));
        assert_eq!(PublicKey::from_spki_pem(&pem), Ok(key));
        assert_eq!(PublicKey::parse(SEED7_PUBLIC), Ok(key));
        assert_eq!(PublicKey::parse(&format!("  {SEED7_PUBLIC}\n")), Ok(key));
        assert_eq!(
            PublicKey::parse("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
            Err(SigningError::BadPublicKey)
        );
        assert_eq!(PublicKey::parse("AAAA"), Err(SigningError::BadPublicKey));
    }

    #[test]
    fn small_order_keys_are_refused_in_every_form() {
        // The identity point (y = 1, order 1) and a point of order 2 (y = -1).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let mut minus_one = [0xffu8; 32];
        minus_one[0] = 0xec;
        minus_one[31] = 0x7f;
        for bytes in [identity, minus_one] {
            assert_eq!(
                PublicKey::from_bytes(&bytes),
                Err(SigningError::BadPublicKey)
            );
            let spki = ed25519_dalek::pkcs8::PublicKeyBytes(bytes)
                .to_public_key_pem(LineEnding::LF)
                .expect("spki");
            assert_eq!(PublicKey::parse(&spki), Err(SigningError::BadPublicKey));
        }
    }
}
