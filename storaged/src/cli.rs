//! The command line: `serve` runs the daemon; `verify`, `recover` and `inspect` work offline
//! on a data directory that no daemon is using.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::audit::Audit;
use crate::engine::{self, Engine, EngineOptions, RecoveryMode};
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
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        #[arg(long, value_enum)]
        mode: Mode,
        /// For point-in-time only: replay records up to and including this LSN (decimal, or
        /// hex with 0x as `inspect` and the reports print it).
        #[arg(long, value_name = "LSN", value_parser = parse_lsn, required_if_eq("mode", "point-in-time"))]
        until_lsn: Option<u64>,
        /// storaged's audit log (`audit_log` in its config): the outcome is appended to its
        /// hash chain, so what an offline recovery cut is on record like the daemon's own.
        #[arg(long, value_name = "FILE")]
        audit_log: Option<PathBuf>,
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

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Verify { data_dir } => verify(&data_dir),
        Command::Recover {
            data_dir,
            mode,
            until_lsn,
            audit_log,
        } => recover(&data_dir, mode, until_lsn, audit_log.as_deref()),
        Command::Inspect { data_dir } => inspect(&data_dir),
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

fn recover(
    dir: &std::path::Path,
    mode: Mode,
    until_lsn: Option<u64>,
    audit_log: Option<&std::path::Path>,
) -> ExitCode {
    if until_lsn.is_some() && !matches!(mode, Mode::PointInTime) {
        eprintln!("photondb-storaged: --until-lsn goes with --mode point-in-time");
        return ExitCode::from(EXIT_USAGE);
    }
    // Opened first: a daemon holding the log (and so the store) refuses this before any change.
    // It must exist (storaged creates it on first start): a mistyped path is not a new chain.
    if let Some(path) = audit_log.filter(|p| !p.is_file()) {
        return fail(&format!("the audit log {} does not exist", path.display()));
    }
    let audit = match audit_log.map(Audit::open).transpose() {
        Ok(audit) => audit,
        Err(err) => {
            let path = audit_log.unwrap_or(std::path::Path::new("")).display();
            return fail(&format!("cannot open the audit log {path}: {err}"));
        }
    };
    let record = |kind: &str, text: String| {
        if let Some(audit) = &audit {
            audit.record(kind, [("report", text.into()), ("offline", true.into())]);
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
