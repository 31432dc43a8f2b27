//! photonctl: parse the command line and hand it to the library.

use clap::Parser as _;

fn main() -> std::process::ExitCode {
    photondb_gateway::ctl::run(photondb_gateway::ctl::Cli::parse())
}
