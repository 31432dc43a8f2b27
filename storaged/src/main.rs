//! photondb-storaged: parse the command line, set up tracing, hand over to the library.

fn main() -> std::process::ExitCode {
    // The one rule of both daemons: RUST_LOG, else PHOTONDB_LOGGING, else info.
    let filter = photondb_proto::logging::filter(|name| std::env::var(name).ok());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    photondb_storaged::cli::run(photondb_storaged::cli::parse())
}
