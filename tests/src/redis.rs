//! A real `redis-server` (installed by `scripts/install-deps`) on a free loopback port, for
//! the gateways that share replay ids and rate limits through it. No persistence
//! (`--save ''`, `--appendonly no`): a restart starts empty, as a fresh Redis would.
//! Ready means: it answers `PING` with `+PONG`. Killed on drop.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::{START_TIMEOUT, STOP_TIMEOUT, poll_until};

/// A running `redis-server` on `127.0.0.1:<port>`.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    /// Its working directory (`--dir`) and log.
    work: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a port that was free a moment ago (another one if someone
    /// took it meanwhile) and waits (bounded) until it answers.
    pub fn start() -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            port: 0,
            work: tempfile::tempdir()?,
        };
        for _ in 0..5 {
            server.port = crate::gateway::free_port()?;
            if server.spawn()? {
                return Ok(server);
            }
        }
        bail!("redis-server did not start; its log:\n{}", server.log())
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the server (SIGKILL: an outage, not a maintenance window) and reaps it; its
    /// port is closed once this returns.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let mut child = self.child.take().context("redis-server is not running")?;
        child.kill()?;
        child.wait()?;
        // Reaped means the socket is closed; still, make sure nothing answers any more.
        let closed = poll_until(STOP_TIMEOUT, || {
            TcpStream::connect_timeout(&self.addr(), Duration::from_millis(100))
                .is_err()
                .then_some(())
        });
        closed.with_context(|| format!("port {} still accepts after the kill", self.port))
    }

    /// Starts the server again on the same port (empty), and waits until it answers.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "redis-server is still running");
        if self.spawn()? {
            Ok(())
        } else {
            bail!(
                "redis-server did not start again on port {} (taken meanwhile?); its log:\n{}",
                self.port,
                self.log()
            )
        }
    }

    /// Everything the server logged, across restarts.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.work.path().join("redis.log")
    }

    /// Starts the process on `self.port`; `Ok(false)` if it exited (the port was taken).
    fn spawn(&mut self) -> anyhow::Result<bool> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let spawned = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.work.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!("redis-server is not installed (scripts/install-deps installs it)")
            }
            Err(e) => return Err(e).context("spawning redis-server"),
        };
        self.child = Some(child);
        let addr = self.addr();
        let outcome = poll_until(START_TIMEOUT, || {
            let child = self.child.as_mut()?;
            if !matches!(child.try_wait(), Ok(None)) {
                return Some(false);
            }
            answers_ping(addr).then_some(true)
        });
        match outcome {
            Some(true) => Ok(true),
            Some(false) => {
                self.child = None;
                Ok(false)
            }
            None => bail!(
                "redis-server did not answer PING within {START_TIMEOUT:?}; its log:\n{}",
                self.log()
            ),
        }
    }
}

/// Whether `PING` over a fresh connection gets `+PONG` within a second.
fn answers_ping(addr: SocketAddr) -> bool {
    let attempt = || -> anyhow::Result<bool> {
        let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
        tcp.set_read_timeout(Some(Duration::from_secs(1)))?;
        tcp.set_write_timeout(Some(Duration::from_secs(1)))?;
        tcp.write_all(b"PING\r\n")?;
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf)?;
        Ok(buf[..n].starts_with(b"+PONG"))
    };
    attempt().unwrap_or(false)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
