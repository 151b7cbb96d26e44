//! Logging: JSON for log pipelines or a compact human format, level from configuration.
//! (OpenTelemetry export joins this one init function in the tracing issue.)

use std::io::IsTerminal;

use tracing_subscriber::{
    EnvFilter, fmt, fmt::writer::BoxMakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::{LogFormat, LoggingSettings};

/// Where log lines go: the server logs to stdout, CLI commands to stderr so that their
/// stdout stays machine-readable (`keys create --json`).
#[derive(Debug, Clone, Copy)]
pub enum LogSink {
    Stdout,
    Stderr,
}

/// Installs the global subscriber. Safe to call twice (the second call is a no-op).
pub fn init(settings: &LoggingSettings, sink: LogSink) {
    // The level was validated with the configuration; fall back to "info" defensively.
    let filter = EnvFilter::try_new(&settings.level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // PostgreSQL's NOTICEs ("relation already exists, skipping") are not news.
        .add_directive("sqlx::postgres::notice=warn".parse().expect("a valid directive"));
    let (writer, ansi) = match sink {
        LogSink::Stdout => (BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal()),
        LogSink::Stderr => (BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal()),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = match settings.format {
        LogFormat::Json => registry.with(json_layer().with_writer(writer)).try_init(),
        LogFormat::Pretty => {
            registry.with(fmt::layer().compact().with_ansi(ansi).with_writer(writer)).try_init()
        }
    };
    // Already initialised (tests build several apps in one process): keep the first.
    drop(result);
}

fn json_layer<S>() -> fmt::Layer<S, fmt::format::JsonFields, fmt::format::Format<fmt::format::Json>>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    // The current span's fields (request_id, method, path) go on every line of a request.
    fmt::layer().json().with_current_span(true).with_span_list(false).flatten_event(true)
}
