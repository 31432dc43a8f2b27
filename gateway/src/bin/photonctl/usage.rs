//! `photonctl usage`: usage per principal and hour, merged from one or more gateways (each
//! keeps its own counts in its state directory and serves them on its private metrics
//! listener).

use std::process::ExitCode;

use photondb_gateway::usage::{Row, merge_rows};
use photondb_proto::signing::Timestamp;

use super::EX_USAGE;
use super::ops::get_private;

#[derive(Debug, clap::Args)]
pub(super) struct UsageArgs {
    /// A gateway's metrics listener (`metrics.listen`); repeat it to merge several gateways.
    #[arg(long, value_name = "HOST:PORT", required = true)]
    gateway: Vec<String>,
    /// Only this principal (`partner:<id>`, `key:<name>`, ...).
    #[arg(long, value_name = "PRINCIPAL")]
    principal: Option<String>,
    /// Hours starting at or after this time (`YYYY-MM-DDTHH:MM:SSZ`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Hours starting before this time (`YYYY-MM-DDTHH:MM:SSZ`).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    #[arg(long, value_parser = ["table", "json", "csv"], default_value = "table")]
    format: String,
}

pub(super) fn run(args: &UsageArgs) -> anyhow::Result<ExitCode> {
    let bound = |t: &Option<String>| -> Result<Option<i64>, String> {
        t.as_deref()
            .map(|t| Timestamp::parse(t).map(Timestamp::unix))
            .transpose()
            .map_err(|_| {
                format!(
                    "{t:?} is not YYYY-MM-DDTHH:MM:SSZ",
                    t = t.as_deref().unwrap_or("")
                )
            })
    };
    let (since, until) = match (bound(&args.since), bound(&args.until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("photonctl usage: {e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let mut sets = Vec::new();
    for gateway in &args.gateway {
        let body = get_private(gateway, "/usage")?;
        let rows: Vec<Row> = serde_json::from_str(&body)
            .map_err(|e| anyhow::anyhow!("{gateway}: /usage is not usage rows: {e}"))?;
        sets.push(rows);
    }
    let rows: Vec<Row> = merge_rows(sets)
        .into_iter()
        .filter(|r| args.principal.as_ref().is_none_or(|p| *p == r.principal))
        .filter(|r| since.is_none_or(|s| r.hour >= s))
        .filter(|r| until.is_none_or(|u| r.hour < u))
        .collect();
    match args.format.as_str() {
        "json" => println!("{}", serde_json::to_string_pretty(&rows)?),
        "csv" => {
            println!(
                "hour,principal,requests,bytes_in,bytes_out,refusals,quota_used,by_operation,by_code"
            );
            for r in &rows {
                let c = &r.counts;
                println!(
                    "{},{},{},{},{},{},{},{},{}",
                    Timestamp::from_unix(r.hour).format(),
                    csv_field(&r.principal),
                    c.requests.values().sum::<u64>(),
                    c.bytes_in,
                    c.bytes_out,
                    c.refusals.values().sum::<u64>(),
                    c.quota_used,
                    csv_field(&pairs(&c.requests)),
                    csv_field(&pairs(&c.refusals)),
                );
            }
        }
        _ => {
            println!(
                "{:<20} {:<28} {:>9} {:>11} {:>11} {:>8} {:>10}  by operation / refusals",
                "hour", "principal", "requests", "bytes in", "bytes out", "refused", "quota used"
            );
            for r in &rows {
                let c = &r.counts;
                println!(
                    "{:<20} {:<28} {:>9} {:>11} {:>11} {:>8} {:>10}  {} / {}",
                    Timestamp::from_unix(r.hour).format(),
                    r.principal,
                    c.requests.values().sum::<u64>(),
                    c.bytes_in,
                    c.bytes_out,
                    c.refusals.values().sum::<u64>(),
                    c.quota_used,
                    pairs(&c.requests),
                    pairs(&c.refusals),
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pairs(map: &std::collections::BTreeMap<String, u64>) -> String {
    let all: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if all.is_empty() {
        "-".into()
    } else {
        all.join(" ")
    }
}

/// A CSV field, quoted when it holds a comma, quote or space.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', ' ', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}
