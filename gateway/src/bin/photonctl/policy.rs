//! `photonctl policy check` and `photonctl policy explain`: the policy directory as the gateway
//! sees it, through the gateway's own loader and its one decision function.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use photondb_gateway::policy::decide::{Decision, decide};
use photondb_gateway::policy::load::load_dir;
use photondb_gateway::policy::model::{Permission, PolicySet};
use photondb_gateway::policy::pattern::parse_resource;

use super::EX_USAGE;

/// The directory did not load, so nothing could be decided.
const EX_NO_POLICY: u8 = 2;

#[derive(Debug, clap::Subcommand)]
pub(super) enum PolicyCommand {
    /// Load and validate a policy directory as the gateway would.
    ///
    /// Prints a summary and the set's version and exits 0, or prints every error, one per
    /// line as `file:line: message`, and exits 1.
    Check {
        /// The policy directory.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// The decision the gateway makes for one request: the binding that allows it, or why
    /// none does.
    ///
    /// Prints `allow (binding FILE:LINE: ...)` and exits 0, or `deny: REASON` and exits 1.
    /// Exits 64 for a bad permission or resource, 2 if the directory does not load.
    Explain(ExplainArgs),
}

#[derive(Debug, clap::Args)]
pub(super) struct ExplainArgs {
    /// The policy directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// `partner:<id>`, `key:<name>`, `jwt:<iss>#<sub>` or `anonymous`.
    #[arg(long, value_name = "PRINCIPAL")]
    principal: String,
    /// A permission, e.g. `table.write`.
    #[arg(long, value_name = "PERMISSION")]
    action: String,
    /// `*`, `db:<db>` or `db:<db>/table:<table>`.
    #[arg(long, value_name = "RESOURCE")]
    resource: String,
}

pub(super) fn run(cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    Ok(match cmd {
        PolicyCommand::Check { dir } => check(dir),
        PolicyCommand::Explain(args) => explain(args),
    })
}

fn check(dir: &Path) -> ExitCode {
    match load_dir(dir) {
        Ok(set) => {
            println!("ok: {}", summary(&set));
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            eprintln!("photonctl: {}: {} error(s)", dir.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}

fn summary(set: &PolicySet) -> String {
    format!(
        "{} partners, {} api keys, {} issuers, {} roles, {} bindings, {} plans (version {})",
        set.partners.len(),
        set.api_keys.len(),
        set.issuers.len(),
        set.roles.len(),
        set.bindings.len(),
        set.plans.len(),
        set.version
    )
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let Some(permission) = Permission::parse(&args.action) else {
        let known: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        eprintln!(
            "photonctl: unknown permission {:?} (known: {})",
            args.action,
            known.join(", ")
        );
        return ExitCode::from(EX_USAGE);
    };
    let resource = match parse_resource(&args.resource) {
        Ok(resource) => resource,
        Err(message) => {
            eprintln!("photonctl: --resource: {message}");
            return ExitCode::from(EX_USAGE);
        }
    };
    let set = match load_dir(&args.dir) {
        Ok(set) => set,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            return ExitCode::from(EX_NO_POLICY);
        }
    };
    match decide(&set, &args.principal, permission, &resource) {
        Decision::Allowed { binding } => {
            println!("allow ({})", describe(&set, &binding));
            ExitCode::SUCCESS
        }
        Decision::Denied { reason } => {
            println!("deny: {reason}");
            ExitCode::FAILURE
        }
    }
}

/// `binding bindings.toml:7: partner:acme -> writer on db:shop`.
fn describe(set: &PolicySet, at: &str) -> String {
    match set.bindings.iter().find(|b| b.at == at) {
        Some(b) => {
            let resources: Vec<String> = b.resources.iter().map(ToString::to_string).collect();
            format!(
                "binding {}: {} -> {} on {}",
                b.at,
                b.principal,
                b.role,
                resources.join(", ")
            )
        }
        None => format!("binding {at}"),
    }
}
