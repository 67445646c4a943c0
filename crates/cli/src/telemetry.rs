use tracing_subscriber::EnvFilter;

/// Human-readable logs, or JSON lines with `MAILFLEET_LOG_FORMAT=json`; level from `RUST_LOG`.
pub fn init(format: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
