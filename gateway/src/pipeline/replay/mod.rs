//! Pipeline step 7 (slot): the replay guard (DESIGN §3.4), after the signature was verified —
//! never before, or anyone could burn a victim's request ids. [`Fresh`] can only be built
//! here. Only signed proofs carry a request id to remember; bearer credentials (JWT, API
//! keys), anonymous and dev requests are fresh at once.
//!
//! A signed request's time must lie within the window of the gateway's; its
//! `(partner, request id or nonce)` must be new, and is remembered until signed time + window
//! (+1 s), past which the window check refuses it anyway. The key a store sees is the
//! SHA-256 of `partner \0 replay_key` ([`StoreKey`]): fixed-size whatever a nonce's length.

mod memory;
mod redis_store;
mod sled_store;

use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::config::DevMode;
use crate::pipeline::auth::{Authenticated, Proof};

pub use memory::{DEFAULT_MAX_ENTRIES, MemoryStore};
pub use redis_store::RedisStore;
pub use sled_store::SledStore;

/// The window of DESIGN §3.4 unless configured otherwise.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Remembered this much past the window, so an id is never forgotten while a clock one tick
/// behind could still accept its timestamp.
const SLACK_SECS: i64 = 1;

/// Proof that step 7 ran for one request; neither `Clone` nor `Copy`, bound to its request id.
#[derive(Debug)]
pub struct Fresh {
    request_id: String,
}

impl Fresh {
    /// The request this proof vouches for.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    fn of(auth: &Authenticated) -> Self {
        Self {
            request_id: auth.request_id().to_owned(),
        }
    }
}

/// Why step 7 refused: 401 `replayed_request`, 401 `timestamp_out_of_window` (with the
/// server's `Date`), 503 `replay_store_unavailable`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayRefusal {
    Replayed,
    OutOfWindow,
    StoreUnavailable,
}

/// The step-7 slot.
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    async fn check(&self, auth: &Authenticated, now_unix: i64) -> Result<Fresh, ReplayRefusal>;
}

/// The store cannot answer: the request is refused (503), never let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreDown;

/// Where request ids are remembered; memory (tests), sled (default), Redis (shared).
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Remembers `key` until `expires_unix` if it is new: Ok(true) new, Ok(false) seen, Err
    /// unavailable. An entry whose expiry is before `now_unix` counts as absent.
    async fn insert_new(
        &self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown>;
}

/// The real guard: a window and a store.
pub struct Replay {
    window: Duration,
    store: std::sync::Arc<dyn ReplayStore>,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Replay {
    pub fn new(window: Duration, store: std::sync::Arc<dyn ReplayStore>) -> Self {
        Self { window, store }
    }

    /// The guard's decision on one proof.
    async fn check_proof(&self, proof: &Proof, now_unix: i64) -> Result<(), ReplayRefusal> {
        let Proof::Signed {
            partner,
            replay_key,
            signed_at,
            expires,
            ..
        } = proof
        else {
            return Ok(());
        };
        self.check_window(*signed_at, *expires, now_unix)?;
        let key = StoreKey::of(partner, replay_key);
        let until = signed_at.saturating_add(self.window_secs() + SLACK_SECS);
        match self.store.insert_new(&key, until, now_unix).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(ReplayRefusal::Replayed),
            Err(StoreDown) => Err(ReplayRefusal::StoreUnavailable),
        }
    }

    /// `|now - signed_at| <= window`, and an RFC 9421 `expires` not yet past.
    fn check_window(
        &self,
        signed_at: i64,
        expires: Option<i64>,
        now_unix: i64,
    ) -> Result<(), ReplayRefusal> {
        let skew_ms = u128::from(now_unix.abs_diff(signed_at)) * 1_000;
        let expired = expires.is_some_and(|e| e < now_unix);
        if skew_ms > self.window.as_millis() || expired {
            Err(ReplayRefusal::OutOfWindow)
        } else {
            Ok(())
        }
    }

    /// The window in whole seconds, rounded up: the store must not forget early.
    fn window_secs(&self) -> i64 {
        let secs = self.window.as_millis().div_ceil(1_000);
        i64::try_from(secs).unwrap_or(i64::MAX / 2)
    }
}

#[async_trait]
impl ReplayGuard for Replay {
    async fn check(&self, auth: &Authenticated, now_unix: i64) -> Result<Fresh, ReplayRefusal> {
        self.check_proof(auth.proof(), now_unix).await?;
        Ok(Fresh::of(auth))
    }
}

/// The store key of `(partner, replay_key)`: SHA-256 of `partner \0 replay_key` (partner ids
/// cannot contain NUL, so no two pairs share a key). Held inline (no allocation per remembered
/// id); Redis sees it as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreKey([u8; 32]);

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreKey({})", self.hex())
    }
}

impl StoreKey {
    pub fn of(partner: &str, replay_key: &str) -> Self {
        let mut h = Sha256::new();
        h.update(partner.as_bytes());
        h.update([0u8]);
        h.update(replay_key.as_bytes());
        Self(h.finalize().into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Lowercase hex (64 digits).
    pub fn hex(&self) -> String {
        photondb_proto::signing::lower_hex(&self.0)
    }
}

/// Dev mode only: remembers nothing, refuses signed requests it cannot check.
#[derive(Debug)]
pub struct DevReplayGuard(DevMode);

impl DevReplayGuard {
    pub fn new(dev: DevMode) -> Self {
        Self(dev)
    }
}

#[async_trait]
impl ReplayGuard for DevReplayGuard {
    async fn check(&self, auth: &Authenticated, _now_unix: i64) -> Result<Fresh, ReplayRefusal> {
        if auth.is_signed() {
            Err(ReplayRefusal::Replayed)
        } else {
            Ok(Fresh::of(auth))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const NOW: i64 = 1_767_225_600; // 2026-01-01T00:00:00Z

    fn signed(replay_key: &str, signed_at: i64, expires: Option<i64>) -> Proof {
        Proof::Signed {
            partner: "acme".into(),
            key_version: 1,
            replay_key: replay_key.into(),
            signed_at,
            expires,
        }
    }

    fn guard() -> Replay {
        Replay::new(DEFAULT_WINDOW, Arc::new(MemoryStore::default()))
    }

    /// A store that is always down.
    struct Down;

    #[async_trait]
    impl ReplayStore for Down {
        async fn insert_new(&self, _: &StoreKey, _: i64, _: i64) -> Result<bool, StoreDown> {
            Err(StoreDown)
        }
    }

    #[tokio::test]
    async fn the_same_request_id_twice_is_a_replay() {
        let g = guard();
        let proof = signed("9b2c3f2e-0d3a-4f7e-8a51-1f3c2b4d5e6f", NOW, None);
        assert_eq!(g.check_proof(&proof, NOW).await, Ok(()));
        assert_eq!(
            g.check_proof(&proof, NOW + 1).await,
            Err(ReplayRefusal::Replayed)
        );
    }

    #[tokio::test]
    async fn another_partner_may_use_the_same_id() {
        let g = guard();
        assert_eq!(g.check_proof(&signed("id", NOW, None), NOW).await, Ok(()));
        let other = Proof::Signed {
            partner: "globex".into(),
            key_version: 1,
            replay_key: "id".into(),
            signed_at: NOW,
            expires: None,
        };
        assert_eq!(g.check_proof(&other, NOW).await, Ok(()));
    }

    #[tokio::test]
    async fn sixty_seconds_of_skew_pass_sixty_one_do_not() {
        let g = guard();
        let cases = [
            (-60, Ok(())),
            (60, Ok(())),
            (-61, Err(ReplayRefusal::OutOfWindow)),
        ];
        for (i, (skew, want)) in cases.into_iter().enumerate() {
            let proof = signed(&format!("id-{i}"), NOW + skew, None);
            assert_eq!(g.check_proof(&proof, NOW).await, want, "skew {skew}");
        }
        let future = signed("id-future", NOW + 61, None);
        assert_eq!(
            g.check_proof(&future, NOW).await,
            Err(ReplayRefusal::OutOfWindow)
        );
    }

    #[tokio::test]
    async fn an_expired_rfc9421_signature_is_out_of_window() {
        let g = guard();
        let past = signed("a", NOW, Some(NOW - 1));
        assert_eq!(
            g.check_proof(&past, NOW).await,
            Err(ReplayRefusal::OutOfWindow)
        );
        let last_second = signed("b", NOW, Some(NOW));
        assert_eq!(g.check_proof(&last_second, NOW).await, Ok(()));
    }

    #[tokio::test]
    async fn a_refused_window_does_not_burn_the_id() {
        let g = guard();
        let early = signed("id", NOW, None);
        assert_eq!(
            g.check_proof(&early, NOW + 61).await,
            Err(ReplayRefusal::OutOfWindow)
        );
        assert_eq!(g.check_proof(&early, NOW).await, Ok(()));
    }

    #[tokio::test]
    async fn a_down_store_is_unavailable_not_open() {
        let g = Replay::new(DEFAULT_WINDOW, Arc::new(Down));
        assert_eq!(
            g.check_proof(&signed("id", NOW, None), NOW).await,
            Err(ReplayRefusal::StoreUnavailable)
        );
    }

    #[tokio::test]
    async fn unsigned_proofs_are_fresh_without_the_store() {
        let g = Replay::new(DEFAULT_WINDOW, Arc::new(Down));
        assert_eq!(g.check_proof(&Proof::Anonymous, NOW).await, Ok(()));
        let auth = Authenticated::anonymous("rid-1");
        let fresh = g.check(&auth, NOW).await.expect("fresh");
        assert_eq!(fresh.request_id(), "rid-1");
    }

    #[tokio::test]
    async fn the_id_is_remembered_until_the_window_and_a_second_pass() {
        let store = Arc::new(MemoryStore::default());
        let g = Replay::new(DEFAULT_WINDOW, store.clone());
        assert_eq!(g.check_proof(&signed("id", NOW, None), NOW).await, Ok(()));
        let key = StoreKey::of("acme", "id");
        assert_eq!(store.insert_new(&key, 0, NOW + 61).await, Ok(false));
        assert_eq!(store.insert_new(&key, 0, NOW + 62).await, Ok(true));
    }

    #[test]
    fn store_keys_are_fixed_size_hex_and_separate_the_fields() {
        let key = StoreKey::of("acme", "id").hex();
        assert_eq!(key.len(), 64);
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_ne!(StoreKey::of("ac", "meid"), StoreKey::of("acme", "id"));
        assert_eq!(
            StoreKey::of("", "").hex(),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
    }
}
