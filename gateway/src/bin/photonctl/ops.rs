//! `photonctl ops`: the incident switches (`read-only`, `mode`, `suspend`, `resume`) written
//! to the gateway's ops file, which it re-reads every second, and `status`, read from the
//! gateway's private metrics listener.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use photondb_gateway::ops::{self, Mode, Switches};
use photondb_proto::signing::Timestamp;

#[derive(Debug, clap::Subcommand)]
pub(super) enum OpsCommand {
    /// Show every switch in force, the breaker, read-only and why, storaged's health and the
    /// policy set's version, as the running gateway sees them.
    Status {
        /// The gateway's metrics listener (`metrics.listen`), e.g. 127.0.0.1:9090.
        #[arg(long, value_name = "HOST:PORT")]
        gateway: String,
        /// Print the gateway's JSON as it is.
        #[arg(long)]
        json: bool,
    },
    /// Refuse (`on`) or allow (`off`) every write: 503 read_only; reads go on.
    ReadOnly {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[command(flatten)]
        change: Change,
    },
    /// Who may call: `open`; `partners-only` (public endpoints answer 503 public_disabled);
    /// `closed` (everything but /public/health answers 503 closed).
    Mode {
        #[arg(value_parser = ["open", "partners-only", "closed"])]
        mode: String,
        #[command(flatten)]
        change: Change,
    },
    /// Refuse a principal's requests with 403 partner_suspended until `resume`. A bare id
    /// means `partner:<id>`; `key:<name>` and `jwt:<iss>#<sub>` are taken as given.
    Suspend {
        principal: String,
        #[command(flatten)]
        change: Change,
    },
    /// Lift a suspension.
    Resume {
        principal: String,
        #[command(flatten)]
        change: Change,
    },
}

/// Where the switch is written, and the audit trail of who and why.
#[derive(Debug, clap::Args)]
pub(super) struct Change {
    /// The gateway's ops file (`ops_file`; default `<state_dir>/ops.json`).
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Who is making the change (audited). Default: $USER.
    #[arg(long, value_name = "NAME")]
    by: Option<String>,
    /// Why (audited), e.g. an incident number.
    #[arg(long, value_name = "TEXT", default_value = "")]
    reason: String,
}

/// One switch's change to the file's switches.
type Edit = Box<dyn FnOnce(&mut Switches)>;

pub(super) fn run(cmd: &OpsCommand) -> anyhow::Result<ExitCode> {
    let (change, apply): (&Change, Edit) = match cmd {
        OpsCommand::Status { gateway, json } => return status(gateway, *json),
        OpsCommand::ReadOnly { state, change } => {
            let on = state == "on";
            (change, Box::new(move |s| s.read_only = on))
        }
        OpsCommand::Mode { mode, change } => {
            let mode = match mode.as_str() {
                "partners-only" => Mode::PartnersOnly,
                "closed" => Mode::Closed,
                _ => Mode::Open,
            };
            (change, Box::new(move |s| s.mode = mode))
        }
        OpsCommand::Suspend { principal, change } => {
            let p = principal_of(principal);
            (
                change,
                Box::new(move |s| {
                    s.suspended.insert(p);
                }),
            )
        }
        OpsCommand::Resume { principal, change } => {
            let p = principal_of(principal);
            (
                change,
                Box::new(move |s| {
                    s.suspended.remove(&p);
                }),
            )
        }
    };
    let by = change
        .by
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let reason = change.reason.clone();
    let now = ops::update(&change.file, move |s| {
        apply(s);
        s.by = by;
        s.reason = reason;
        s.changed = Timestamp::now().format();
    })
    .with_context(|| format!("updating {}", change.file.display()))?;
    println!("{}", describe(&now));
    eprintln!("the gateway applies it within a second");
    Ok(ExitCode::SUCCESS)
}

fn principal_of(arg: &str) -> String {
    if arg.contains(':') {
        arg.to_owned()
    } else {
        format!("partner:{arg}")
    }
}

fn describe(s: &Switches) -> String {
    let suspended: Vec<&str> = s.suspended.iter().map(String::as_str).collect();
    format!(
        "mode: {}\nread_only: {}\nsuspended: {}\nlast change: {} by {}{}",
        s.mode.as_str(),
        s.read_only,
        if suspended.is_empty() {
            "none".to_owned()
        } else {
            suspended.join(", ")
        },
        if s.changed.is_empty() {
            "-"
        } else {
            &s.changed
        },
        if s.by.is_empty() { "-" } else { &s.by },
        if s.reason.is_empty() {
            String::new()
        } else {
            format!(" ({})", s.reason)
        }
    )
}

/// GETs `path` from a gateway's private metrics listener; returns the 200 answer's body.
pub(super) fn get_private(gateway: &str, path: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect(gateway).with_context(|| format!("connecting to {gateway}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {gateway}\r\nConnection: close\r\n\r\n"
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .with_context(|| format!("{gateway}: the answer has no body"))?;
    anyhow::ensure!(
        head.starts_with("HTTP/1.1 200"),
        "{gateway} answered {}",
        head.lines().next().unwrap_or("")
    );
    Ok(body.to_owned())
}

fn status(gateway: &str, json: bool) -> anyhow::Result<ExitCode> {
    let body = get_private(gateway, "/ops/status")?;
    if json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let v: serde_json::Value = serde_json::from_str(&body).context("the status is not JSON")?;
    let switches: Switches = serde_json::from_value(v["switches"].clone()).unwrap_or_default();
    println!("{}", describe(&switches));
    println!("ops file: {}", v["ops_file"].as_str().unwrap_or("none"));
    println!(
        "status: {}\nbreaker: {}\nread-only in force: {} ({})\nstorage: {}\npolicy version: {}",
        v["status"].as_str().unwrap_or("?"),
        v["breaker"].as_str().unwrap_or("?"),
        v["read_only"],
        v["read_only_reason"].as_str().unwrap_or("-"),
        v["storage"].as_str().unwrap_or("?"),
        v["policy_version"].as_str().unwrap_or("?"),
    );
    Ok(ExitCode::SUCCESS)
}
