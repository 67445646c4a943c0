//! Metrics of one process, recorded with the OpenTelemetry API and read two ways: scraped by
//! Prometheus at `/metrics`, and pushed by OTLP when an endpoint is configured. Names follow
//! Prometheus conventions once exported (`mailfleet_…_total`, `_seconds`, `_bytes`); labels
//! are job kinds, error classes, states and queues — never an account or an address.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use std::sync::OnceLock;

/// Job durations, 10 ms … 10 min: from a connection test to a long sync slice.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];

pub struct Metrics {
    jobs_consumed: Counter<u64>,
    jobs_published: Counter<u64>,
    jobs_failed: Counter<u64>,
    jobs_dead_lettered: Counter<u64>,
    job_duration: Histogram<f64>,
    messages_synced: Counter<u64>,
    fetched: Counter<u64>,
    provider_errors: Counter<u64>,
    lease_takeovers: Counter<u64>,
    messages_sent: Counter<u64>,
    accounts: Gauge<i64>,
    queue_messages: Gauge<i64>,
}

fn kind(k: &str) -> [KeyValue; 1] {
    [KeyValue::new("kind", k.to_owned())]
}

impl Metrics {
    fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, help: &'static str| {
            meter.u64_counter(name).with_description(help).build()
        };
        Self {
            jobs_consumed: counter(
                "mailfleet_jobs_consumed",
                "Jobs taken off RabbitMQ and run, by kind",
            ),
            jobs_published: counter(
                "mailfleet_jobs_published",
                "Jobs published to RabbitMQ (confirmed), by kind",
            ),
            jobs_failed: counter(
                "mailfleet_jobs_failed",
                "Jobs whose provider or database work failed, by kind",
            ),
            jobs_dead_lettered: counter(
                "mailfleet_jobs_dead_lettered",
                "Jobs moved to the dead queue, by kind",
            ),
            job_duration: meter
                .f64_histogram("mailfleet_job_duration")
                .with_unit("s")
                .with_description("Time to run a job, by kind")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            messages_synced: counter("mailfleet_messages_synced", "Messages stored by syncs"),
            fetched: meter
                .u64_counter("mailfleet_fetched")
                .with_unit("By")
                .with_description("Bytes received from mail servers by syncs")
                .build(),
            provider_errors: counter(
                "mailfleet_provider_errors",
                "Provider errors, by class (auth_failed, transient, rate_limited, permanent)",
            ),
            lease_takeovers: counter(
                "mailfleet_lease_takeovers",
                "Syncs that lost their account's lease to another worker",
            ),
            messages_sent: counter(
                "mailfleet_messages_sent",
                "Outgoing messages settled by a send job, by outcome",
            ),
            accounts: meter
                .i64_gauge("mailfleet_accounts")
                .with_description("Accounts by state (coordinator)")
                .build(),
            queue_messages: meter
                .i64_gauge("mailfleet_queue_messages")
                .with_description(
                    "Messages ready in each RabbitMQ queue: the backlog workers have yet to take (coordinator)",
                )
                .build(),
        }
    }

    pub fn job_published(&self, k: &str) {
        self.jobs_published.add(1, &kind(k));
    }

    pub fn job_dead_lettered(&self, k: &str) {
        self.jobs_dead_lettered.add(1, &kind(k));
    }

    pub fn job_consumed(&self, k: &str, seconds: f64) {
        self.jobs_consumed.add(1, &kind(k));
        self.job_duration.record(seconds, &kind(k));
    }

    pub fn job_failed(&self, k: &str) {
        self.jobs_failed.add(1, &kind(k));
    }

    pub fn synced(&self, messages: u64, bytes: u64) {
        self.messages_synced.add(messages, &[]);
        self.fetched.add(bytes, &[]);
    }

    pub fn provider_error(&self, class: &str) {
        self.provider_errors
            .add(1, &[KeyValue::new("class", class.to_owned())]);
    }

    pub fn lease_takeover(&self) {
        self.lease_takeovers.add(1, &[]);
    }

    pub fn message_sent(&self, outcome: &str) {
        self.messages_sent
            .add(1, &[KeyValue::new("outcome", outcome.to_owned())]);
    }

    pub fn set_accounts(&self, state: &str, n: i64) {
        self.accounts
            .record(n, &[KeyValue::new("state", state.to_owned())]);
    }

    pub fn set_queue_messages(&self, queue: &str, n: i64) {
        self.queue_messages
            .record(n, &[KeyValue::new("queue", queue.to_owned())]);
    }
}

struct State {
    registry: prometheus::Registry,
    // Keeps the readers alive (and flushes the OTLP one on exit, see `shutdown`).
    provider: SdkMeterProvider,
    metrics: Metrics,
}

static STATE: OnceLock<State> = OnceLock::new();

/// Sets up the meter provider: a Prometheus reader always, an OTLP one when `otlp` is set.
/// The first call wins; later ones (and `metrics()` before any) get the same setup.
pub(crate) fn install(resource: opentelemetry_sdk::Resource, otlp: bool) {
    STATE.get_or_init(|| build(resource, otlp));
}

fn build(resource: opentelemetry_sdk::Resource, otlp: bool) -> State {
    let registry = prometheus::Registry::new();
    let mut builder = SdkMeterProvider::builder().with_resource(resource);
    match opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .scope_info_enabled(false)
        .build()
    {
        Ok(reader) => builder = builder.with_reader(reader),
        Err(e) => eprintln!("telemetry: the Prometheus reader failed: {e}"),
    }
    if otlp {
        match opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => {
                builder = builder.with_reader(
                    opentelemetry_sdk::metrics::PeriodicReader::builder(exporter).build(),
                );
            }
            Err(e) => eprintln!("telemetry: OTLP metrics not exported: {e}"),
        }
    }
    let provider = builder.build();
    let metrics = Metrics::new(&provider.meter("mailfleet"));
    State {
        registry,
        provider,
        metrics,
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &STATE
        .get_or_init(|| build(opentelemetry_sdk::Resource::builder().build(), false))
        .metrics
}

/// Flushes the OTLP reader, if any (on exit).
pub(crate) fn shutdown() {
    if let Some(s) = STATE.get() {
        let _ = s.provider.shutdown();
    }
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    use prometheus::Encoder;
    let _ = metrics();
    let state = STATE.get().expect("initialised by metrics()");
    let mut out = Vec::new();
    prometheus::TextEncoder::new()
        .encode(&state.registry.gather(), &mut out)
        .expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruments_render_with_prometheus_names_and_labels() {
        let m = metrics();
        m.job_consumed("sync_account", 0.3);
        m.synced(3, 1024);
        m.set_accounts("active", 2);
        let text = render();
        for expected in [
            "mailfleet_jobs_consumed_total{kind=\"sync_account\"} 1",
            "mailfleet_job_duration_seconds_bucket{kind=\"sync_account\",le=\"0.5\"} 1",
            "mailfleet_fetched_bytes_total 1024",
            "mailfleet_messages_synced_total 3",
            "mailfleet_accounts{state=\"active\"} 2",
        ] {
            assert!(text.contains(expected), "{expected} not in\n{text}");
        }
    }
}
