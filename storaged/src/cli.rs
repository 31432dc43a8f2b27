//! The command line: `serve` runs the daemon; `verify`, `recover` and `inspect` work offline
//! on a data directory that no daemon is using.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

use photondb_proto::audit::AuditOptions;

use crate::audit::Audit;
use crate::engine::{self, Engine, EngineOptions, RecoveryMode, SystemClock};
use crate::server::{self, Stopped};

/// Exit code for usage and configuration errors, unreadable or invalid TLS files included
/// (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// Exit code when the daemon stopped because the disk failed (EX_SOFTWARE).
pub const EXIT_STORAGE_FAILURE: u8 = 70;

/// `verify`'s exit codes besides 0 (clean); see its `--help`.
pub mod verify_exit {
    pub const BAD_PAGES: u8 = 1;
    pub const CANNOT_VERIFY: u8 = 2;
    pub const WOULD_CUT: u8 = 3;
    pub const LOG_DAMAGED: u8 = 4;
    pub const CONTROL_SLOT_DAMAGED: u8 = 5;
}

/// PhotonDB's storage daemon: gRPC over mutual TLS on a checksummed WAL and B+tree.
#[derive(Debug, Parser)]
#[command(name = "photondb-storaged", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon. Recovery runs first; on corruption it refuses to start with a report.
    ///
    /// Exits 64 listing every configuration error (an unreadable or invalid certificate, key
    /// or CA included) before the store is opened, 70 if the disk failed while serving.
    Serve {
        /// The TOML configuration (see deploy/storaged.example.toml).
        #[arg(long, short, value_name = "FILE", env = "PHOTONDB_STORAGED_CONFIG")]
        config: PathBuf,
    },
    /// Check the log and the control file as recovery would, then every page checksum and the
    /// tree's invariants. Changes nothing, ever (`recover` is the tool that changes a store).
    ///
    /// Exit 0: clean; 1: bad pages (each is named); 2: the store could not be verified (DIR
    /// holds no store, a process has it open, an I/O error); 3: recovery would cut a torn tail
    /// from the log (its position, size and records are reported); 4: the log is damaged and
    /// recovery would refuse to open the store (the report names the segment, offset and last
    /// valid LSN); 5: a damaged control slot would be passed over (the other one is valid).
    /// With several findings the exit code is the first of 4, 1, 3, 5 that applies.
    Verify {
        /// The store's directory (`data_dir` in storaged's config).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run recovery in a chosen mode, then checkpoint. Cut WAL bytes go to DIR/quarantine.
    ///
    /// Exit 0: recovered (the report says what was cut); 1: could not open or checkpoint
    /// (DIR holds no store, it is in use, an I/O error); 2: recovery refused, with a report
    /// (also a point-in-time target it cannot honour); 64: a usage error.
    Recover {
        /// The store's directory (`data_dir` in storaged's config).
        #[arg(long, value_name = "DIR", required_unless_present = "config")]
        data_dir: Option<PathBuf>,
        /// storaged's configuration: its `data_dir` (unless --data-dir is given), and its
        /// audit log with the `[audit]` key, so the outcome is appended and anchored as the
        /// daemon would.
        #[arg(long, value_name = "FILE", conflicts_with = "audit_log")]
        config: Option<PathBuf>,
        #[arg(long, value_enum)]
        mode: Mode,
        /// For point-in-time only: replay records up to and including this LSN (decimal, or
        /// hex with 0x as `inspect` and the reports print it).
        #[arg(long, value_name = "LSN", value_parser = parse_lsn, required_if_eq("mode", "point-in-time"))]
        until_lsn: Option<u64>,
        /// storaged's audit log (`audit_log` in its config): the outcome is appended to its
        /// hash chain, so what an offline recovery cut is on record like the daemon's own
        /// (unanchored: give --config instead to sign it with the `[audit]` key).
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
    },
    /// Take a base backup into a new directory: of a stopped store (--data-dir), or of a live
    /// one through storaged's admin service (--connect; it writes under its `[backup] dir`).
    ///
    /// The backup is a checkpoint's control state, the data file (copied while later
    /// checkpoints may write it) and the WAL from that checkpoint's redo point to the backup's
    /// end, which makes it consistent; then manifest.json (every file's size and SHA-256), written
    /// last: a directory without it is an incomplete backup. Exit 0: taken; 1: failed; 64: a
    /// usage error.
    Backup {
        /// The stopped store's directory (`data_dir` in storaged's config).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "connect",
            conflicts_with = "connect"
        )]
        data_dir: Option<PathBuf>,
        /// The new backup directory (must not exist, or be empty). With --connect, a name or a
        /// path directly under storaged's `[backup] dir`.
        #[arg(long, value_name = "BACKUP_DIR")]
        to: PathBuf,
        /// Encrypt to this age public key (age1...; repeat for several). Offline only: online
        /// backups use storaged's `[backup] recipients`.
        #[arg(
            long = "recipient",
            value_name = "AGE_PUBLIC_KEY",
            conflicts_with = "connect"
        )]
        recipients: Vec<String>,
        /// The live storaged's gRPC address (HOST:PORT), reached over mutual TLS.
        #[arg(long, value_name = "HOST:PORT", requires_all = ["cert", "key", "ca"])]
        connect: Option<String>,
        /// A client certificate storaged accepts (its URI SAN in `tls.allowed_clients`).
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The CA storaged's certificate chains to.
        #[arg(long, value_name = "FILE")]
        ca: Option<PathBuf>,
        /// The name storaged's certificate carries.
        #[arg(long, value_name = "NAME", default_value = "storaged.photondb.local")]
        server_name: String,
    },
    /// Restore a base backup, plus the archived WAL after it, to a point in time, into a new
    /// directory (never over a store).
    ///
    /// Every file is checked against the manifest, every archived segment against its sidecar;
    /// the log is replayed to the target, checkpointed, and the full verify must be clean before
    /// the directory appears under its name. Exit 0: restored; 1: failed (I/O); 2: refused,
    /// with the reason (a gap in the archive names the first missing LSN and the latest
    /// reachable target); 64: a usage error.
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
    Restore {
        /// The base backup's directory.
        #[arg(long, value_name = "BACKUP_DIR")]
        backup: PathBuf,
        /// The WAL archive (`[archive] dir`); without it, only the backup's own log is replayed.
        #[arg(long, value_name = "ARCHIVE_DIR")]
        archive: Option<PathBuf>,
        /// The new store directory.
        #[arg(long, value_name = "NEW_DIR")]
        to: PathBuf,
        /// Replay records up to and including this LSN (decimal, or hex with 0x).
        #[arg(long, value_name = "LSN", value_parser = parse_lsn, group = "target")]
        until_lsn: Option<u64>,
        /// Replay records committed at or before this time: RFC 3339
        /// (2026-12-03T10:00:00Z) or Unix milliseconds.
        #[arg(long, value_name = "TIME", value_parser = parse_time, group = "target")]
        until_time: Option<u64>,
        /// Replay everything the backup and archive hold.
        #[arg(long, group = "target")]
        latest: bool,
        /// The age identity file (private key) an encrypted backup or archive needs.
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Stop archiving a stopped store's WAL: remove its marks (sealed segments waiting for the
    /// archive are then retired as usual) and its claim on its archive, so storaged starts
    /// without `[archive]`. The archive's continuity ends here: take a new base backup once
    /// archiving is configured again. Exit 0: done; 1: failed.
    StopArchiving {
        /// The store's directory (`data_dir` in storaged's config).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Print control slots, WAL segments and LSNs, page counts by type and free space.
    Inspect {
        /// The store's directory (`data_dir` in storaged's config).
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Truncate a proven torn tail; refuse on corruption.
    TornTail,
    /// Refuse anything but a clean end of log.
    Strict,
    /// Replay up to --until-lsn and quarantine the rest.
    PointInTime,
    /// Keep the valid prefix, quarantine the rest, start anyway, report what was lost.
    Salvage,
}

/// Parses the command line; a usage error exits 64 (EX_USAGE), so that 2 keeps its meaning for
/// `verify` (cannot open) and `recover` (refused). `--help` and `--version` exit 0.
pub fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|err| {
        let code = if err.use_stderr() {
            i32::from(EXIT_USAGE)
        } else {
            0
        };
        let _ = err.print();
        std::process::exit(code)
    })
}

fn parse_lsn(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("{text:?} is not an LSN (decimal, or hex with 0x)"))
}

fn parse_time(text: &str) -> Result<u64, String> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().map_err(|_| format!("{text:?} is too large"));
    }
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time or Unix milliseconds: {e}"))?;
    u64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("{text:?} is before 1970"))
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Verify { data_dir } => verify(&data_dir),
        Command::Recover {
            data_dir,
            config,
            mode,
            until_lsn,
            audit_log,
        } => match recovery_target(data_dir, config.as_deref(), audit_log) {
            Ok((dir, audit)) => recover(&dir, mode, until_lsn, audit),
            Err(code) => code,
        },
        Command::Inspect { data_dir } => inspect(&data_dir),
        Command::StopArchiving { data_dir } => stop_archiving(&data_dir),
        Command::Backup {
            data_dir,
            to,
            recipients,
            connect,
            cert,
            key,
            ca,
            server_name,
        } => match (data_dir, connect) {
            (Some(dir), _) => backup_offline(&dir, &to, &recipients),
            (None, Some(addr)) => {
                let files = [cert, key, ca].map(Option::unwrap_or_default);
                backup_online(&addr, &files, &server_name, &to)
            }
            (None, None) => {
                eprintln!("photondb-storaged: backup needs --data-dir or --connect");
                ExitCode::from(EXIT_USAGE)
            }
        },
        Command::Restore {
            backup,
            archive,
            to,
            until_lsn,
            until_time,
            latest,
            identity,
        } => {
            let target = match (until_lsn, until_time, latest) {
                (Some(lsn), None, false) => engine::RestoreTarget::UntilLsn(lsn),
                (None, Some(ms), false) => engine::RestoreTarget::UntilTime(ms),
                (None, None, true) => engine::RestoreTarget::Latest,
                _ => {
                    eprintln!(
                        "photondb-storaged: restore needs exactly one of --until-lsn, --until-time, --latest"
                    );
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            restore(
                &backup,
                archive.as_deref(),
                &to,
                target,
                identity.as_deref(),
            )
        }
    }
}

fn stop_archiving(dir: &std::path::Path) -> ExitCode {
    let opts = EngineOptions {
        create_if_missing: false,
        ..EngineOptions::default()
    };
    let stopped = Engine::open(dir, opts)
        .map_err(|e| e.to_string())
        .and_then(|(engine, _)| engine.stop_archiving().map_err(|e| e.to_string()));
    match stopped {
        Ok(marks) => {
            println!(
                "archiving of {} stopped: {marks} sealed segments no longer wait for the archive",
                dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&format!("cannot stop archiving {}: {err}", dir.display())),
    }
}

fn backup_offline(dir: &std::path::Path, to: &std::path::Path, keys: &[String]) -> ExitCode {
    let recipients = match keys.is_empty() {
        true => None,
        false => match engine::Recipients::parse(keys) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!("photondb-storaged: --recipient: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
    };
    match engine::backup_offline(dir, to, recipients.as_ref()) {
        Ok(m) => {
            println!(
                "backup written to {}: LSN {:#x} to {:#x}, {} files, {} bytes{}",
                to.display(),
                m.start_lsn,
                m.end_lsn,
                m.files.len(),
                m.files.iter().map(|f| f.size).sum::<u64>(),
                if m.encrypted { ", encrypted" } else { "" }
            );
            ExitCode::SUCCESS
        }
        Err(engine::BackupError::Open(engine::OpenError::Locked(_))) => fail(&format!(
            "{} is in use by a running storaged: take the backup through it with --connect",
            dir.display()
        )),
        Err(err) => fail(&format!("backup of {} failed: {err}", dir.display())),
    }
}

fn backup_online(
    addr: &str,
    [cert, key, ca]: &[PathBuf; 3],
    server_name: &str,
    to: &std::path::Path,
) -> ExitCode {
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let (cert, key, ca) = match (read(cert), read(key), read(ca)) {
        (Ok(c), Ok(k), Ok(a)) => (c, k, a),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("photondb-storaged: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => return fail(&format!("starting the runtime: {err}")),
    };
    let to = to.display().to_string();
    let answer: Result<photondb_proto::v1::BackupResponse, String> = runtime.block_on(async move {
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(server_name.to_string());
        let channel = Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|e| e.to_string())?
            .tls_config(tls)
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| format!("cannot reach storaged at {addr}: {e}"))?;
        let mut admin = photondb_proto::v1::admin_client::AdminClient::new(channel);
        // Each call answers within seconds; until the backup is done, ask again.
        loop {
            let answer = admin
                .backup(photondb_proto::v1::BackupRequest { to: to.clone() })
                .await
                .map(|r| r.into_inner())
                .map_err(|s| {
                    format!("storaged refused the backup: {}: {}", s.code(), s.message())
                })?;
            if answer.done {
                return Ok(answer);
            }
            eprintln!("photondb-storaged: backup {} still running...", answer.name);
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    match answer {
        Ok(b) => {
            println!(
                "backup {} written under storaged's [backup] dir: LSN {:#x} to {:#x}, {} files, {} bytes{}, {} ms",
                b.name,
                b.start_lsn,
                b.end_lsn,
                b.files,
                b.bytes,
                if b.encrypted { ", encrypted" } else { "" },
                b.duration_micros / 1000
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn restore(
    backup: &std::path::Path,
    archive: Option<&std::path::Path>,
    to: &std::path::Path,
    target: engine::RestoreTarget,
    identity: Option<&std::path::Path>,
) -> ExitCode {
    let identities = match identity.map(engine::Identities::load).transpose() {
        Ok(ids) => ids,
        Err(e) => {
            eprintln!("photondb-storaged: --identity: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match engine::restore(backup, archive, to, target, identities.as_ref()) {
        Ok(report) => {
            print!("{report}");
            println!("restored store: {}", to.display());
            ExitCode::SUCCESS
        }
        Err(
            err @ (engine::RestoreError::Io(_)
            | engine::RestoreError::Recovery(engine::OpenError::Storage(_))),
        ) => fail(&format!("restore failed: {err}")),
        Err(err) => {
            eprintln!("photondb-storaged: restore refused: {err}");
            ExitCode::from(2)
        }
    }
}

/// Validates everything (the configuration and the TLS files it names) before anything runs:
/// a bad configuration exits 64 with no data directory opened, no recovery run, nothing bound.
fn serve(path: &std::path::Path) -> ExitCode {
    let config = match crate::config::load(path, |name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("photondb-storaged: invalid configuration:");
            for line in &errors.0 {
                eprintln!("  {line}");
            }
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(err) => return fail(&format!("starting the runtime: {err}")),
    };
    runtime.block_on(async {
        let running = match server::start(config).await {
            Ok(running) => running,
            Err(err) => return fail(&format!("{err:#}")),
        };
        println!("storaged listening on {}", running.addr);
        if let Some(m) = running.metrics_addr {
            println!("metrics on http://{m}/metrics");
        }
        let stop = running.stop_handle();
        tokio::spawn(async move {
            stop_on_signal().await;
            stop.notify_one();
        });
        exit_for(running.wait().await)
    })
}

/// SIGTERM or SIGINT: stop accepting, finish in-flight calls, exit.
async fn stop_on_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn exit_for(outcome: anyhow::Result<Stopped>) -> ExitCode {
    match outcome {
        Ok(Stopped::Requested) => ExitCode::SUCCESS,
        Ok(Stopped::StorageFailure) => {
            eprintln!(
                "photondb-storaged: stopped after a storage failure; restart to recover from the WAL"
            );
            ExitCode::from(EXIT_STORAGE_FAILURE)
        }
        Err(err) => fail(&format!("{err:#}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("photondb-storaged: {message}");
    ExitCode::FAILURE
}

fn verify(dir: &std::path::Path) -> ExitCode {
    match engine::verify_offline(dir) {
        Ok(found) => {
            println!("{found}");
            let code = match (&found.log, found.pages.is_clean()) {
                (engine::LogFinding::WouldRefuse(_), _) => verify_exit::LOG_DAMAGED,
                (_, false) => verify_exit::BAD_PAGES,
                (engine::LogFinding::WouldCut { .. }, true) => verify_exit::WOULD_CUT,
                (engine::LogFinding::Clean { .. }, true) if found.control_warning.is_some() => {
                    verify_exit::CONTROL_SLOT_DAMAGED
                }
                (engine::LogFinding::Clean { .. }, true) => return ExitCode::SUCCESS,
            };
            ExitCode::from(code)
        }
        Err(err) => {
            eprintln!("photondb-storaged: cannot verify {}:\n{err}", dir.display());
            ExitCode::from(verify_exit::CANNOT_VERIFY)
        }
    }
}

/// Where `recover` works and what it audits to: the flags, or storaged's configuration.
fn recovery_target(
    data_dir: Option<PathBuf>,
    config: Option<&std::path::Path>,
    audit_log: Option<PathBuf>,
) -> Result<(PathBuf, Option<(PathBuf, AuditOptions)>), ExitCode> {
    let Some(path) = config else {
        let dir = data_dir.ok_or(ExitCode::from(EXIT_USAGE))?;
        return Ok((dir, audit_log.map(|log| (log, AuditOptions::default()))));
    };
    let config = crate::config::load(path, |name| std::env::var(name).ok()).map_err(|errors| {
        eprintln!("photondb-storaged: invalid configuration:");
        for line in &errors.0 {
            eprintln!("  {line}");
        }
        ExitCode::from(EXIT_USAGE)
    })?;
    let options = config.audit.options().map_err(|e| {
        eprintln!("photondb-storaged: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let dir = data_dir.unwrap_or(config.data_dir);
    Ok((dir, Some((config.audit_log, options))))
}

fn recover(
    dir: &std::path::Path,
    mode: Mode,
    until_lsn: Option<u64>,
    audit_log: Option<(PathBuf, AuditOptions)>,
) -> ExitCode {
    if until_lsn.is_some() && !matches!(mode, Mode::PointInTime) {
        eprintln!("photondb-storaged: --until-lsn goes with --mode point-in-time");
        return ExitCode::from(EXIT_USAGE);
    }
    // Opened first: a daemon holding the log (and so the store) refuses this before any change.
    // It must exist (storaged creates it on first start): a mistyped path is not a new chain.
    let audit = match audit_log {
        None => None,
        Some((path, _)) if !path.is_file() => {
            return fail(&format!("the audit log {} does not exist", path.display()));
        }
        Some((path, options)) => match Audit::open_with(&path, options, Arc::new(SystemClock)) {
            Ok(audit) => Some(audit),
            Err(err) => {
                return fail(&format!(
                    "cannot open the audit log {}: {err}",
                    path.display()
                ));
            }
        },
    };
    let record = |kind: &str, text: String| {
        if let Some(audit) = &audit {
            audit.record(kind, [("report", text.into()), ("offline", true.into())]);
            audit.close();
        }
    };
    let recovery = match mode {
        Mode::TornTail => RecoveryMode::TornTail,
        Mode::Strict => RecoveryMode::Strict,
        Mode::PointInTime => RecoveryMode::PointInTime {
            until_lsn: until_lsn.unwrap_or(0),
        },
        Mode::Salvage => RecoveryMode::Salvage,
    };
    let opts = EngineOptions {
        recovery,
        create_if_missing: false,
        ..EngineOptions::default()
    };
    match Engine::open(dir, opts) {
        Ok((engine, report)) => {
            print!("{report}");
            match engine.checkpoint() {
                Ok(_) => {
                    record("recovery", report.to_string());
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    let failed = format!("checkpoint after recovery failed: {err}");
                    record("recovery_failed", format!("{report}\n{failed}"));
                    fail(&failed)
                }
            }
        }
        // The only invalid option `recover` can pass is a point-in-time target it cannot honour.
        Err(err @ (engine::OpenError::Refused(_) | engine::OpenError::InvalidOptions(_))) => {
            record("recovery_refused", err.to_string());
            eprintln!("photondb-storaged: recovery refused:\n{err}");
            ExitCode::from(2)
        }
        Err(err) => fail(&format!("cannot recover {}: {err}", dir.display())),
    }
}

fn inspect(dir: &std::path::Path) -> ExitCode {
    match engine::inspect(dir) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => fail(&format!("cannot inspect {}: {err}", dir.display())),
    }
}
