//! Prometheus metrics of the edge (one registry), served as text on the private metrics
//! listener: requests by route and status, latencies, upstream latency, breaker state,
//! read-only state, refusals by reason.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::breaker::BreakerState;

/// The gateway's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    upstream_latency: HistogramVec,
    refusals: IntCounterVec,
    breaker_state: IntGauge,
    read_only: IntGauge,
    policy_reloads: IntCounterVec,
    anomaly_last_minute: IntGaugeVec,
    anomaly_alert: IntGaugeVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let buckets = vec![
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
        .expect("static metric definition")
}

fn gauges(name: &str, help: &str) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), &["signal"]).expect("static metric definition")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("static metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
            requests: counter(
                "photondb_gateway_requests_total",
                "Requests by route and HTTP status",
                &["route", "status"],
            ),
            latency: histogram(
                "photondb_gateway_request_seconds",
                "Request latency by route",
                &["route"],
            ),
            upstream_latency: histogram(
                "photondb_gateway_upstream_seconds",
                "storaged call latency by operation",
                &["op"],
            ),
            refusals: counter(
                "photondb_gateway_refusals_total",
                "Refused requests by reason code",
                &["reason"],
            ),
            breaker_state: gauge(
                "photondb_gateway_breaker_state",
                "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ),
            read_only: gauge("photondb_gateway_read_only", "1 while writes are refused"),
            policy_reloads: counter(
                "photondb_gateway_policy_reloads_total",
                "Policy directory reloads by outcome (swapped, rejected)",
                &["outcome"],
            ),
            anomaly_last_minute: gauges(
                "photondb_gateway_anomaly_last_minute",
                "Attack signals in the last whole minute (signature_failures, quota_bypass)",
            ),
            anomaly_alert: gauges(
                "photondb_gateway_anomaly_alert",
                "1 while a signal is at or over its alert threshold ([ops] alert_*_per_min)",
            ),
        };
        m.register_all();
        m
    }

    fn register_all(&self) {
        let r = &self.registry;
        let all: [Box<dyn prometheus::core::Collector>; 9] = [
            Box::new(self.anomaly_last_minute.clone()),
            Box::new(self.anomaly_alert.clone()),
            Box::new(self.requests.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.upstream_latency.clone()),
            Box::new(self.refusals.clone()),
            Box::new(self.breaker_state.clone()),
            Box::new(self.read_only.clone()),
            Box::new(self.policy_reloads.clone()),
        ];
        for c in all {
            r.register(c).expect("metric names are unique");
        }
    }

    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.latency.with_label_values(&[route]).observe(seconds);
    }

    pub fn upstream(&self, op: &str, seconds: f64) {
        self.upstream_latency
            .with_label_values(&[op])
            .observe(seconds);
    }

    pub fn policy_reload(&self, outcome: &str) {
        self.policy_reloads.with_label_values(&[outcome]).inc();
    }

    pub fn refusal(&self, code: &str) {
        self.refusals.with_label_values(&[code]).inc();
    }

    pub fn set_state(&self, breaker: BreakerState, read_only: bool) {
        let b = match breaker {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        self.breaker_state.set(b);
        self.read_only.set(read_only.into());
    }

    /// One signal's last minute.
    pub fn anomaly(&self, signal: &str, count: u64, alert: bool) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.anomaly_last_minute
            .with_label_values(&[signal])
            .set(count);
        self.anomaly_alert
            .with_label_values(&[signal])
            .set(alert.into());
    }

    /// The registry, for metrics defined elsewhere (usage metering).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::new();
        m.request("get", 200, 0.01);
        m.refusal("payload_too_large");
        let text = m.render();
        assert!(
            text.contains("photondb_gateway_requests_total{route=\"get\",status=\"200\"} 1"),
            "{text}"
        );
        assert!(text.contains("reason=\"payload_too_large\""), "{text}");
    }
}
