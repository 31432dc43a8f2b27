//! photondb-storaged: parse the command line, set up tracing, hand over to the library.

fn main() -> std::process::ExitCode {
    let filter = std::env::var("PHOTONDB_LOGGING")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    photondb_storaged::cli::run(photondb_storaged::cli::parse())
}
