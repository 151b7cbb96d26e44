//! Logs and traces, set up by one function.
//!
//! - Logs: JSON (for pipelines) or compact text, level from configuration. Every line of a
//!   request carries its `request_id`, `trace_id` and `span_id`, so logs and traces join.
//! - Traces: `tracing` spans become OpenTelemetry spans (always, so that trace ids exist for
//!   logs and `traceparent` responses) and are exported over OTLP when an endpoint is set.
//!   Export failures are logged at most once a minute; the queue is bounded, so a missing
//!   collector costs neither memory nor noise.

use std::{
    fmt,
    io::IsTerminal,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use opentelemetry::{
    KeyValue,
    propagation::{Extractor, TextMapPropagator},
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter},
};
use serde_json::{Map, Value};
use tracing::{Event, Level, Span, Subscriber, field::Field};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::Targets,
    fmt::{
        FmtContext, FormatEvent, FormatFields, FormattedFields,
        format::{JsonFields, Writer},
        writer::BoxMakeWriter,
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::config::{LogFormat, OtlpProtocol, Settings, TelemetrySettings};

/// Where log lines go: the server logs to stdout, CLI commands to stderr so that their
/// stdout stays machine-readable (`keys create --json`).
#[derive(Debug, Clone, Copy)]
pub enum LogSink {
    Stdout,
    Stderr,
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still queued (graceful shutdown), within the exporter's timeout.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            tracing::debug!(error = %err, "trace pipeline shutdown");
        }
    }
}

/// Installs logging and tracing. Call inside the tokio runtime (the gRPC exporter needs it).
/// Safe to call twice: the second subscriber is not installed.
pub fn init(settings: &Settings, sink: LogSink) -> Telemetry {
    let provider = tracer_provider(&settings.telemetry);
    let tracer = provider.tracer("phone-manager");
    // Traces see our own spans at INFO whatever the log level; nothing from the exporters
    // themselves (that would feed back into the pipeline).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("phone_manager", Level::INFO));

    // The level was validated with the configuration; fall back to "info" defensively.
    let filter = EnvFilter::try_new(&settings.logging.level)
        .unwrap_or_else(|_| EnvFilter::new("info"))
        // PostgreSQL's NOTICEs ("relation already exists, skipping") are not news, and the
        // exporter's own complaints are summarised by QuietExporter.
        .add_directive("sqlx::postgres::notice=warn".parse().expect("a valid directive"))
        .add_directive("opentelemetry_sdk=off".parse().expect("a valid directive"))
        .add_directive("opentelemetry_otlp=off".parse().expect("a valid directive"));
    let (writer, ansi) = match sink {
        LogSink::Stdout => (BoxMakeWriter::new(std::io::stdout), std::io::stdout().is_terminal()),
        LogSink::Stderr => (BoxMakeWriter::new(std::io::stderr), std::io::stderr().is_terminal()),
    };
    let logs = match settings.logging.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_writer(writer)
            .with_filter(filter)
            .boxed(),
    };
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let installed = tracing_subscriber::registry().with(logs).with(otel).try_init().is_ok();
    if installed && !settings.telemetry.otlp_endpoint.trim().is_empty() {
        tracing::info!(endpoint = %settings.telemetry.otlp_endpoint, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

fn tracer_provider(settings: &TelemetrySettings) -> SdkTracerProvider {
    let version = if settings.service_version.is_empty() {
        env!("CARGO_PKG_VERSION")
    } else {
        &settings.service_version
    };
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attributes([
            KeyValue::new("service.version", version.to_owned()),
            KeyValue::new("deployment.environment.name", settings.environment.clone()),
        ])
        .build();
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sampling_ratio))));
    let endpoint = settings.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return builder.build();
    }
    match exporter(endpoint, settings.otlp_protocol) {
        Ok(exporter) => {
            // Bounded queue: with no collector, spans are dropped instead of piling up.
            let config = BatchConfigBuilder::default()
                .with_max_queue_size(4096)
                .with_max_export_batch_size(512)
                .with_scheduled_delay(Duration::from_secs(2))
                .build();
            let processor =
                BatchSpanProcessor::builder(QuietExporter::new(exporter)).with_batch_config(config).build();
            builder.with_span_processor(processor).build()
        }
        Err(err) => {
            eprintln!("warning: traces will not be exported: cannot set up the OTLP exporter: {err}");
            builder.build()
        }
    }
}

fn exporter(endpoint: &str, protocol: OtlpProtocol) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    let timeout = Duration::from_secs(3);
    Ok(match protocol {
        OtlpProtocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(timeout)
            .build()?,
        OtlpProtocol::HttpProtobuf => {
            let base = endpoint.trim_end_matches('/');
            let url =
                if base.ends_with("/v1/traces") { base.to_owned() } else { format!("{base}/v1/traces") };
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .with_timeout(timeout)
                .build()?
        }
    })
}

/// Wraps the exporter so that an unreachable collector produces one warning a minute (with a
/// count of the batches lost meanwhile) instead of one per batch.
#[derive(Debug)]
struct QuietExporter<E> {
    inner: E,
    last_warning: Mutex<Option<Instant>>,
    failed_batches: AtomicU64,
}

impl<E> QuietExporter<E> {
    fn new(inner: E) -> Self {
        Self { inner, last_warning: Mutex::new(None), failed_batches: AtomicU64::new(0) }
    }
}

impl<E: SpanExporter> SpanExporter for QuietExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        if let Err(err) = &result {
            let failed = self.failed_batches.fetch_add(1, Ordering::Relaxed) + 1;
            let mut last = self.last_warning.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                *last = Some(Instant::now());
                tracing::warn!(error = %err, failed_batches = failed, "cannot export traces; spans are being dropped");
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Reads W3C trace context (`traceparent`, `tracestate`) from request headers.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Makes `span` continue the caller's trace when the headers carry a valid `traceparent`.
pub fn continue_trace(span: &Span, headers: &axum::http::HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Records the span's OpenTelemetry ids in its `trace_id` and `span_id` fields (declared
/// `Empty`), which every log line inside the span then carries.
pub fn record_trace_ids(span: &Span) {
    if let Some((trace_id, span_id, _)) = ids(span) {
        span.record("trace_id", tracing::field::display(trace_id));
        span.record("span_id", tracing::field::display(span_id));
    }
}

/// `traceparent` for a response: the trace and the server span that handled the request.
pub fn traceparent(span: &Span) -> Option<String> {
    ids(span).map(|(trace_id, span_id, sampled)| format!("00-{trace_id}-{span_id}-{:02x}", u8::from(sampled)))
}

fn ids(span: &Span) -> Option<(String, String, bool)> {
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    span_context.is_valid().then(|| {
        (span_context.trace_id().to_string(), span_context.span_id().to_string(), span_context.is_sampled())
    })
}

/// One JSON object per line: time, level, target, message, the event's fields, and the fields
/// of every enclosing span (root first, inner spans win), so `request_id`, `trace_id` and
/// `span_id` appear on every line of a request.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let metadata = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true).into(),
        );
        line.insert("level".into(), metadata.level().as_str().into());
        line.insert("target".into(), metadata.target().into());
        if let Some(scope) = ctx.event_scope() {
            let mut innermost = None;
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FormattedFields<N>>()
                    && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(fields)
                {
                    // `otel.*` fields steer span export; they are noise in a log line.
                    line.extend(fields.into_iter().filter(|(name, _)| !name.starts_with("otel.")));
                }
                innermost = Some(span.name());
            }
            if let Some(name) = innermost {
                line.insert("span".into(), name.into());
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        writeln!(writer, "{}", Value::Object(line))
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}
