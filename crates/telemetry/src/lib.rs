//! What SREs see of a mailfleet process: logs (text, or JSON lines), traces (OpenTelemetry,
//! exported by OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, carried across RabbitMQ in W3C
//! `traceparent` headers) and metrics (Prometheus `/metrics`, and OTLP when configured).

pub mod metrics;
pub mod propagation;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the tracer provider alive; dropping it flushes the spans not yet exported.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans failed: {e}");
        }
        metrics::shutdown();
    }
}

/// Log targets held at INFO because their DEBUG/TRACE output carries protocol traffic.
const SECRET_BEARING_TARGETS: [&str; 1] = ["async_imap=info"];

/// Whether the environment names an OTLP endpoint for traces.
fn otlp_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Installs the global subscriber: the log format (`json` or text) at the level `RUST_LOG`
/// asks (default `info`), and OpenTelemetry spans. Spans always get trace ids (they go into
/// the logs and across RabbitMQ); they are exported only when an OTLP endpoint is set
/// (`OTEL_EXPORTER_OTLP_PROTOCOL`: `http/protobuf`, the default, or `http/json`).
pub fn init(service: &str, log_format: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let resource = Resource::builder()
        .with_service_name(service.to_owned())
        .build();
    metrics::install(resource.clone(), otlp_configured());
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if otlp_configured() {
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
        {
            Ok(exporter) => builder = builder.with_batch_exporter(exporter),
            Err(e) => eprintln!("telemetry: OTLP exporter not started: {e}"),
        }
    }
    let provider = builder.build();
    let tracer = provider.tracer("mailfleet");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Whatever RUST_LOG says: these targets log protocol traffic verbatim at DEBUG/TRACE,
    // credentials included (async-imap prints every command it encodes, LOGIN too).
    for quiet in SECRET_BEARING_TARGETS {
        filter = filter.add_directive(quiet.parse().expect("a valid directive"));
    }
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let result = if log_format == "json" {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if let Err(e) = result {
        eprintln!("telemetry: a subscriber was already installed: {e}");
    }
    Telemetry { provider }
}

/// The current span's trace id (32 hex digits), for a log field; `None` outside a trace.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}
