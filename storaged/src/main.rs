//! photondb-storaged: parse the command line, set up tracing, hand over to the library.

fn main() -> std::process::ExitCode {
    // The one rule of both daemons: RUST_LOG, else PHOTONDB_LOGGING, else info; JSON lines
    // with PHOTONDB_LOG_FORMAT=json.
    let env = |name: &str| std::env::var(name).ok();
    let filter = tracing_subscriber::EnvFilter::new(photondb_proto::logging::filter(env));
    let lines = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if photondb_proto::logging::json(env) {
        lines
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        lines
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    photondb_storaged::cli::run(photondb_storaged::cli::parse())
}
