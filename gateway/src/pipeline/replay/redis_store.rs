//! The shared replay store: several gateways remember request ids in one Redis with
//! `SET replay:<key> 1 NX EX <seconds left>`, so a request replayed to another gateway is
//! refused too. A relative expiry (not `EXAT`) keeps Redis's own clock out of the window and
//! works on any Redis. Any Redis error or timeout is [`StoreDown`] (503), never a pass; the
//! connection comes back by itself (see [`crate::redis_conn`]).

use async_trait::async_trait;

use super::{ReplayStore, StoreDown, StoreKey};
use crate::redis_conn::SharedRedis;

#[derive(Debug, Clone)]
pub struct RedisStore {
    redis: SharedRedis,
}

impl RedisStore {
    pub fn new(redis: SharedRedis) -> Self {
        Self { redis }
    }
}

#[async_trait]
impl ReplayStore for RedisStore {
    async fn insert_new(
        &self,
        key: &StoreKey,
        expires_unix: i64,
        now_unix: i64,
    ) -> Result<bool, StoreDown> {
        let ttl_secs = expires_unix.saturating_sub(now_unix).max(1);
        let mut cmd = redis::cmd("SET");
        cmd.arg(format!("replay:{}", key.hex()))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(ttl_secs);
        // `OK` when set, nil when the key already existed.
        let reply: Option<String> = self.redis.query(&cmd).await.map_err(|_| StoreDown)?;
        Ok(reply.is_some())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::redis_conn::test_server::RedisServer;

    const NOW: i64 = 1_767_225_600;

    fn k(id: &str) -> StoreKey {
        StoreKey::of("test", id)
    }
    const HOUR_LATER: i64 = NOW + 3_600;

    fn store(url: &str) -> RedisStore {
        RedisStore::new(SharedRedis::new(url, Duration::from_secs(2)).expect("url"))
    }

    #[tokio::test]
    async fn two_gateways_share_one_memory_of_ids() {
        let Some(server) = RedisServer::start("two_gateways_share_one_memory_of_ids") else {
            return;
        };
        let (first, second) = (store(&server.url), store(&server.url));
        assert_eq!(first.insert_new(&k("k"), HOUR_LATER, NOW).await, Ok(true));
        assert_eq!(first.insert_new(&k("k"), HOUR_LATER, NOW).await, Ok(false));
        assert_eq!(second.insert_new(&k("k"), HOUR_LATER, NOW).await, Ok(false));
        assert_eq!(
            second.insert_new(&k("other"), HOUR_LATER, NOW).await,
            Ok(true)
        );
    }

    #[tokio::test]
    async fn an_unreachable_redis_is_down() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let url = format!("redis://127.0.0.1:{port}/");
        let redis = SharedRedis::new(&url, Duration::from_millis(200)).expect("url");
        let store = RedisStore::new(redis);
        assert_eq!(
            store.insert_new(&k("k"), HOUR_LATER, NOW).await,
            Err(StoreDown)
        );
    }
}
