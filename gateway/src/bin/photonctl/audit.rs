//! `photonctl audit verify`: checks audit logs as both daemons write them (DESIGN §8), through
//! photondb-proto's one checker.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use photondb_proto::audit::{self, VerifyOptions};
use photondb_proto::signing::PublicKey;

use super::EX_USAGE;

#[derive(Debug, clap::Subcommand)]
pub(super) enum AuditCommand {
    /// Check audit log files: the hash chain across them, every anchor's signature, and the
    /// last anchor kept outside the log.
    ///
    /// Give the live file and its rotated files in any order (`audit.log*`). Names the first
    /// edited, inserted, removed, reordered or truncated line by file, line and seq, and a
    /// forged anchor. Exits 0 intact, 1 broken, 64 for a usage error (a file that cannot be
    /// read, a bad key, or a log with anchors but no --key).
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct VerifyArgs {
    /// The audit public key anchors must be signed with (base64, or a file holding it or an
    /// SPKI PEM); repeat it for a log signed across a key rotation.
    #[arg(long, value_name = "KEY|FILE")]
    key: Vec<String>,
    /// The copy of the last anchor kept outside the log. Default: `<FILE>.anchor` next to a
    /// file given, when it exists.
    #[arg(long, value_name = "FILE")]
    anchor: Option<PathBuf>,
    /// Do not look for an anchor copy (a truncated tail then goes unnoticed).
    #[arg(long, conflicts_with = "anchor")]
    no_anchor_copy: bool,
    /// The files may begin in the middle of the chain (older files deleted on purpose).
    #[arg(long)]
    partial: bool,
    /// The log files.
    #[arg(value_name = "FILE", required = true)]
    files: Vec<PathBuf>,
}

pub(super) fn run(cmd: &AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Verify(args) => Ok(verify(args).unwrap_or_else(|usage| {
            eprintln!("photonctl audit verify: {usage:#}");
            ExitCode::from(EX_USAGE)
        })),
    }
}

/// `Err`: a usage problem (exit 64).
fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = args
        .key
        .iter()
        .map(|k| parse_key(k))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let copy_path = match (&args.anchor, args.no_anchor_copy) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => None,
        (None, false) => args
            .files
            .iter()
            .map(|f| audit::default_anchor_copy(f))
            .find(|p| p.is_file()),
    };
    let anchor_copy = match &copy_path {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the anchor copy {}", path.display()))?,
        ),
        None => None,
    };
    let options = VerifyOptions {
        keys,
        anchor_copy,
        partial: args.partial,
    };
    // `audit.log*` also matches the anchor copy and its temporary file: they are not log files.
    let files: Vec<PathBuf> = args
        .files
        .iter()
        .filter(|f| {
            let name = f.to_string_lossy();
            !(name.ends_with(".anchor") || name.ends_with(".anchor.tmp"))
        })
        .cloned()
        .collect();
    let checked = audit::verify_files(&files, &options)?;
    let report = match checked {
        Ok(report) => report,
        Err(broken) => {
            println!("BROKEN: {broken}");
            return Ok(ExitCode::from(1));
        }
    };
    if report.anchors > 0 && options.keys.is_empty() {
        anyhow::bail!(
            "the log has {} signed anchors: give the audit public key with --key to check them",
            report.anchors
        );
    }
    println!(
        "intact: {} lines (seq {} to {}) in {} file(s), {} anchors checked",
        report.lines,
        report.first_seq,
        report.last_seq,
        files.len(),
        report.anchors
    );
    match (&copy_path, report.anchor_copy_seq) {
        (Some(path), Some(seq)) => {
            println!(
                "the anchor kept outside the log ({}, seq {seq}) matches",
                path.display()
            );
        }
        _ => println!("warning: no anchor copy was checked: a log cut short would go unnoticed"),
    }
    if report.anchors == 0 {
        println!("warning: the log has no anchors: a truncated tail cannot be detected");
    } else if report.unanchored_tail > 0 {
        println!(
            "note: the last {} lines come after the last anchor; cutting them would go unnoticed",
            report.unanchored_tail
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A public key given inline or as a file.
fn parse_key(arg: &str) -> anyhow::Result<PublicKey> {
    let text = match std::fs::read_to_string(arg) {
        Ok(text) => text,
        Err(_) => arg.to_owned(),
    };
    PublicKey::parse(&text).map_err(|_| {
        anyhow::anyhow!("--key {arg}: not an Ed25519 public key (base64 of 32 bytes or SPKI PEM)")
    })
}
