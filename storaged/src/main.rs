//! photondb-storaged: parse the command line, set up tracing, hand over to the library.

/// The log filter: `RUST_LOG` (a full filter) when set and not empty, else `PHOTONDB_LOGGING`
/// (e.g. `debug`), else `info`. The gateway follows the same rule.
fn log_filter(var: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("RUST_LOG")
        .or_else(|| set("PHOTONDB_LOGGING"))
        .unwrap_or_else(|| "info".into())
}

fn main() -> std::process::ExitCode {
    let filter = log_filter(|name| std::env::var(name).ok());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    photondb_storaged::cli::run(photondb_storaged::cli::parse())
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn rust_log_wins_then_photondb_logging_then_info() {
        let both = env(&[
            ("RUST_LOG", "photondb_storaged=trace"),
            ("PHOTONDB_LOGGING", "debug"),
        ]);
        assert_eq!(log_filter(both), "photondb_storaged=trace");
        let empty_rust_log = env(&[("RUST_LOG", ""), ("PHOTONDB_LOGGING", "debug")]);
        assert_eq!(log_filter(empty_rust_log), "debug");
        assert_eq!(log_filter(env(&[("PHOTONDB_LOGGING", "warn")])), "warn");
        assert_eq!(log_filter(env(&[])), "info");
    }
}
