//! The one log-level rule of both daemons: `RUST_LOG` (a full filter) wins when set and not
//! empty; else `PHOTONDB_LOGGING` (e.g. `debug`); else `info`. `PHOTONDB_LOG_FORMAT=json`
//! makes every line a JSON object carrying the fields of its spans (the request id of the
//! request it belongs to); anything else, or unset, is plain text.

/// The filter directive to give the subscriber, from the environment read by `var`.
pub fn filter(var: impl Fn(&str) -> Option<String>) -> String {
    let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
    set("RUST_LOG")
        .or_else(|| set("PHOTONDB_LOGGING"))
        .unwrap_or_else(|| "info".into())
}

/// Whether log lines are JSON (`PHOTONDB_LOG_FORMAT=json`).
pub fn json(var: impl Fn(&str) -> Option<String>) -> bool {
    var("PHOTONDB_LOG_FORMAT").is_some_and(|v| v.trim().eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::{filter, json};

    #[test]
    fn json_only_when_asked_for() {
        assert!(json(env(&[("PHOTONDB_LOG_FORMAT", "json")])));
        assert!(!json(env(&[("PHOTONDB_LOG_FORMAT", "text")])));
        assert!(!json(env(&[])));
    }

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
        assert_eq!(filter(both), "photondb_storaged=trace");
        let empty_rust_log = env(&[("RUST_LOG", ""), ("PHOTONDB_LOGGING", "debug")]);
        assert_eq!(filter(empty_rust_log), "debug");
        assert_eq!(filter(env(&[("PHOTONDB_LOGGING", "warn")])), "warn");
        assert_eq!(filter(env(&[])), "info");
    }
}
