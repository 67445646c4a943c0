//! W3C trace context across RabbitMQ: the publisher writes `traceparent` (and `tracestate`)
//! into the message headers; the consumer makes its job span a child of it, so a job's trace
//! runs from the API request or schedule that published it through the worker.

use opentelemetry::propagation::{Extractor, Injector};
use std::collections::HashMap;
use tracing_opentelemetry::OpenTelemetrySpanExt;

struct Map<'a>(&'a mut HashMap<String, String>);

impl Injector for Map<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct Pairs<'a>(&'a [(String, String)]);

impl Extractor for Pairs<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

/// The current span's context as headers (`traceparent`, `tracestate`); empty outside a
/// trace.
pub fn current_headers() -> HashMap<String, String> {
    let cx = tracing::Span::current().context();
    let mut out = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut Map(&mut out)));
    out
}

/// Makes `span` a child of the context these headers carry (if they carry one).
pub fn continue_from(span: &tracing::Span, headers: &[(String, String)]) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&Pairs(headers)));
    use opentelemetry::trace::TraceContextExt;
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}
