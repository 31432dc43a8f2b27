//! The one way to reach the Redis server several gateways share (replay ids, rate limits): a
//! lazily connected [`ConnectionManager`] (it reconnects by itself once connected), every
//! command and connection attempt bounded by one timeout, so a hung or absent Redis is a
//! refusal, never a hang. An outage and its end are logged once each.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Cmd, FromRedisValue, RedisResult, ScriptInvocation};
use tokio::time::error::Elapsed;

/// Redis could not answer in time; callers refuse (replay) or fall back (limits).
#[derive(Debug)]
pub enum RedisDown {
    /// No answer within the timeout.
    Timeout,
    /// Another task is opening the first connection right now; not waiting for it keeps a
    /// Redis that is down at startup from queueing every request behind one attempt.
    Connecting,
    /// Redis answered with an error, or the connection failed.
    Error(redis::RedisError),
    /// The reply did not have the expected shape.
    BadReply,
}

impl fmt::Display for RedisDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("no answer in time"),
            Self::Connecting => f.write_str("still connecting"),
            Self::Error(e) => write!(f, "{e}"),
            Self::BadReply => f.write_str("unexpected reply"),
        }
    }
}

/// A handle on the shared Redis; clones share one connection.
#[derive(Clone)]
pub struct SharedRedis(Arc<Inner>);

struct Inner {
    client: Client,
    timeout: Duration,
    conn: Mutex<Option<ConnectionManager>>,
    connecting: tokio::sync::Mutex<()>,
    /// Whether the last command succeeded: logs once per outage, not once per request.
    up: AtomicBool,
}

/// The URL may carry a password: never printed.
impl fmt::Debug for SharedRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedRedis")
            .field("timeout", &self.0.timeout)
            .finish_non_exhaustive()
    }
}

impl SharedRedis {
    /// Checks the URL only; the connection is opened on first use (or by [`Self::connect`]),
    /// so a gateway started while Redis is down serves 503s and recovers by itself.
    pub fn new(url: &str, timeout: Duration) -> RedisResult<Self> {
        Ok(Self(Arc::new(Inner {
            client: Client::open(url)?,
            timeout,
            conn: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            up: AtomicBool::new(true),
        })))
    }

    /// Opens the connection now (startup), within the timeout.
    pub async fn connect(&self) -> Result<(), RedisDown> {
        self.connection().await.map(drop)
    }

    /// Runs one command.
    pub async fn query<T: FromRedisValue + Send>(&self, cmd: &Cmd) -> Result<T, RedisDown> {
        let mut conn = self.connection().await?;
        let reply = tokio::time::timeout(self.0.timeout, cmd.query_async(&mut conn)).await;
        self.settle(reply)
    }

    /// Runs a script (`EVALSHA`, loading it first if the server does not know it).
    pub async fn invoke<T: FromRedisValue + Send>(
        &self,
        script: &ScriptInvocation<'_>,
    ) -> Result<T, RedisDown> {
        let mut conn = self.connection().await?;
        let reply = tokio::time::timeout(self.0.timeout, script.invoke_async(&mut conn)).await;
        self.settle(reply)
    }

    async fn connection(&self) -> Result<ConnectionManager, RedisDown> {
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let Ok(_only_one) = self.0.connecting.try_lock() else {
            return Err(RedisDown::Connecting);
        };
        if let Some(conn) = self.current() {
            return Ok(conn);
        }
        let client = self.0.client.clone();
        let opened = ConnectionManager::new_with_config(client, self.config());
        let conn = self.settle(tokio::time::timeout(self.0.timeout, opened).await)?;
        *self.slot() = Some(conn.clone());
        Ok(conn)
    }

    /// The manager bounds its own connection attempts and answers the same way.
    fn config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.0.timeout))
            .set_response_timeout(Some(self.0.timeout))
    }

    fn current(&self) -> Option<ConnectionManager> {
        self.slot().clone()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<ConnectionManager>> {
        self.0.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn settle<T>(&self, reply: Result<RedisResult<T>, Elapsed>) -> Result<T, RedisDown> {
        let result = match reply {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(RedisDown::Error(e)),
            Err(_) => Err(RedisDown::Timeout),
        };
        self.note(result.as_ref().err());
        result
    }

    fn note(&self, failure: Option<&RedisDown>) {
        let was_up = self.0.up.swap(failure.is_none(), Ordering::Relaxed);
        match (was_up, failure) {
            (true, Some(why)) => tracing::warn!(error = %why, "redis unavailable"),
            (false, None) => tracing::info!("redis reachable again"),
            _ => {}
        }
    }
}

/// A throwaway `redis-server` for tests; absent binary: the test says so and skips.
#[cfg(test)]
pub(crate) mod test_server {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    /// A `redis-server` on a free loopback port, killed on drop.
    pub(crate) struct RedisServer {
        child: Child,
        pub(crate) url: String,
    }

    impl RedisServer {
        /// `None` (after printing why) when `redis-server` is not installed.
        pub(crate) fn start(test: &str) -> Option<Self> {
            let port = free_port();
            let spawned = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn();
            let mut child = match spawned {
                Ok(child) => child,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    eprintln!("SKIPPED {test}: redis-server is not installed");
                    return None;
                }
                Err(e) => panic!("cannot start redis-server: {e}"),
            };
            wait_ready(&mut child);
            let url = format!("redis://127.0.0.1:{port}/");
            Some(Self { child, url })
        }
    }

    impl Drop for RedisServer {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn free_port() -> u16 {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    }

    /// Reads the server's log until it accepts connections, then drains the rest on a
    /// thread so a full pipe never blocks it.
    fn wait_ready(child: &mut Child) {
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => panic!("redis-server exited before accepting connections"),
            }
        }
        std::thread::spawn(move || lines.for_each(drop));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_url_is_refused_at_once() {
        assert!(SharedRedis::new("not a url", Duration::from_millis(100)).is_err());
    }

    #[tokio::test]
    async fn nothing_listening_is_down_not_a_hang() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port(); // dropped at once: nothing listens there
        let url = format!("redis://127.0.0.1:{port}/");
        let redis = SharedRedis::new(&url, Duration::from_millis(200)).expect("url");
        assert!(redis.connect().await.is_err());
        let ping: Result<String, RedisDown> = redis.query(&redis::cmd("PING")).await;
        assert!(ping.is_err());
    }

    #[tokio::test]
    async fn a_running_server_answers() {
        let Some(server) = test_server::RedisServer::start("a_running_server_answers") else {
            return;
        };
        let redis = SharedRedis::new(&server.url, Duration::from_secs(2)).expect("url");
        let pong: String = redis.query(&redis::cmd("PING")).await.expect("ping");
        assert_eq!(pong, "PONG");
    }
}
