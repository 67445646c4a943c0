//! Prometheus metrics of one process, served as text at `/metrics`. Names follow Prometheus
//! conventions (`mailfleet_…_total`, `_seconds`, `_bytes`); labels are job kinds, error
//! classes, states and queues — never an account or an address.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Kind {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Class {
    pub class: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct State {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Queue {
    pub queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: String,
}

fn job_duration() -> Histogram {
    // 10 ms … ~10 min: a connection test to a long sync slice.
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
    ])
}

pub struct Metrics {
    pub jobs_consumed: Family<Kind, Counter>,
    pub jobs_published: Family<Kind, Counter>,
    pub jobs_failed: Family<Kind, Counter>,
    pub jobs_dead_lettered: Family<Kind, Counter>,
    pub job_duration: Family<Kind, Histogram, fn() -> Histogram>,
    pub messages_synced: Counter,
    pub fetched_bytes: Counter,
    pub provider_errors: Family<Class, Counter>,
    pub lease_takeovers: Counter,
    pub messages_sent: Family<Outcome, Counter>,
    pub accounts: Family<State, Gauge>,
    pub queue_messages: Family<Queue, Gauge>,
    registry: Registry,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            jobs_consumed: Family::default(),
            jobs_published: Family::default(),
            jobs_failed: Family::default(),
            jobs_dead_lettered: Family::default(),
            job_duration: Family::new_with_constructor(job_duration),
            messages_synced: Counter::default(),
            fetched_bytes: Counter::default(),
            provider_errors: Family::default(),
            lease_takeovers: Counter::default(),
            messages_sent: Family::default(),
            accounts: Family::default(),
            queue_messages: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "mailfleet_jobs_consumed",
            "Jobs taken off RabbitMQ and run, by kind",
            m.jobs_consumed.clone(),
        );
        registry.register(
            "mailfleet_jobs_published",
            "Jobs published to RabbitMQ (confirmed), by kind",
            m.jobs_published.clone(),
        );
        registry.register(
            "mailfleet_jobs_failed",
            "Jobs whose provider or database work failed, by kind",
            m.jobs_failed.clone(),
        );
        registry.register(
            "mailfleet_jobs_dead_lettered",
            "Jobs moved to the dead queue, by kind",
            m.jobs_dead_lettered.clone(),
        );
        registry.register(
            "mailfleet_job_duration_seconds",
            "Time to run a job, by kind",
            m.job_duration.clone(),
        );
        registry.register(
            "mailfleet_messages_synced",
            "Messages stored by syncs",
            m.messages_synced.clone(),
        );
        registry.register(
            "mailfleet_fetched_bytes",
            "Bytes received from mail servers by syncs",
            m.fetched_bytes.clone(),
        );
        registry.register(
            "mailfleet_provider_errors",
            "Provider errors, by class (auth_failed, transient, rate_limited, permanent)",
            m.provider_errors.clone(),
        );
        registry.register(
            "mailfleet_lease_takeovers",
            "Syncs that lost their account's lease to another worker",
            m.lease_takeovers.clone(),
        );
        registry.register(
            "mailfleet_messages_sent",
            "Outgoing messages settled, by outcome",
            m.messages_sent.clone(),
        );
        registry.register(
            "mailfleet_accounts",
            "Accounts by state (coordinator)",
            m.accounts.clone(),
        );
        registry.register(
            "mailfleet_queue_messages",
            "Messages ready in each RabbitMQ queue: the backlog workers have yet to take (coordinator)",
            m.queue_messages.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn kind(&self, kind: &str) -> Kind {
        Kind {
            kind: kind.to_owned(),
        }
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &metrics().registry)
        .expect("writing to a String cannot fail");
    out
}

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_prometheus_names_and_kind_labels() {
        let m = metrics();
        m.jobs_consumed.get_or_create(&m.kind("sync_account")).inc();
        m.job_duration
            .get_or_create(&m.kind("sync_account"))
            .observe(0.3);
        m.fetched_bytes.inc_by(1024);
        let text = render();
        assert!(
            text.contains("mailfleet_jobs_consumed_total{kind=\"sync_account\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("mailfleet_job_duration_seconds_bucket{"),
            "{text}"
        );
        assert!(
            text.contains("mailfleet_fetched_bytes_total 1024"),
            "{text}"
        );
    }
}
