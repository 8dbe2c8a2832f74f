//! Telemetry as `build` sets it up: the tracer and meter providers for the
//! resolved sink, the layers a subscriber gets, and the guard whose
//! shutdown flushes and reports what was delivered.

use crate::config::{ExportConfig, LogFormat};
use crate::error::BootstrapError;
use crate::settings::ResolvedSink;
use crate::sinks::{
    ConsoleSummary, CountingExporter, CountingProcessor, FileExporter, SpanCounters,
};
use crate::unsampled::UnsampledTraceFilter;
use crate::{sinks, tracer};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

static INITIALIZED: AtomicBool = AtomicBool::new(false);

/// What shutdown delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[must_use]
pub struct ShutdownReport {
    /// Sampled spans that ended.
    pub ended: u64,
    /// Spans the sink accepted.
    pub exported: u64,
    /// Spans in exports that failed (collector down, timeout).
    pub failed: u64,
    /// Whether shutdown gave up at `shutdown_timeout_ms`.
    pub timed_out: bool,
}

impl ShutdownReport {
    /// Spans that ended but never reached the sink: queue overflow, failed
    /// exports, or still pending when shutdown timed out.
    pub fn dropped(&self) -> u64 {
        self.ended.saturating_sub(self.exported)
    }
}

/// One line for people: `12 of 40 spans were not exported (12 in failed
/// exports, shutdown timed out)`, or `all 40 spans were exported`.
impl std::fmt::Display for ShutdownReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.dropped() == 0 {
            return write!(f, "all {} spans were exported", self.ended);
        }
        write!(
            f,
            "{} of {} spans were not exported ({} in failed exports{})",
            self.dropped(),
            self.ended,
            self.failed,
            if self.timed_out {
                ", shutdown timed out"
            } else {
                ""
            }
        )
    }
}

/// Keeps telemetry running; [`TelemetryGuard::shutdown`] (or drop) flushes it.
#[derive(Debug)]
pub struct TelemetryGuard {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    counters: Arc<SpanCounters>,
    shutdown_timeout: Duration,
    trace_file: Option<PathBuf>,
    sink: ResolvedSink,
    #[cfg(feature = "grpc")]
    runtime: Option<tokio::runtime::Runtime>,
    done: bool,
}

impl TelemetryGuard {
    /// The sink spans go to.
    pub fn sink(&self) -> &ResolvedSink {
        &self.sink
    }

    /// The trace file, for the file sink.
    pub fn trace_file(&self) -> Option<&Path> {
        self.trace_file.as_deref()
    }

    /// The meter provider (also installed as the global one), when metrics
    /// are exported.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// The counts so far, without flushing: what [`TelemetryGuard::shutdown`]
    /// would report if every queued span were lost now. Spans still queued
    /// for export are in `ended` but in neither `exported` nor `failed`, so
    /// `exported + failed == ended` means every span that ended so far has
    /// been through an export attempt (when the queue never overflowed).
    pub fn progress(&self) -> ShutdownReport {
        self.report(false)
    }

    /// Flushes and stops every provider within the configured timeout, on a
    /// thread of its own (so it cannot deadlock a current-thread runtime),
    /// and reports what was delivered.
    pub fn shutdown(mut self) -> ShutdownReport {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> ShutdownReport {
        if self.done {
            return self.report(false);
        }
        self.done = true;
        let timeout = self.shutdown_timeout;
        // Spans dftrace builds after a query has returned (its operator
        // spans) are built before the providers flush.
        let started = std::time::Instant::now();
        let built = dftrace_registry::flush_pending_work(timeout);
        let timeout = timeout.saturating_sub(started.elapsed());
        let tracer = self.tracer_provider.take();
        let meter = self.meter_provider.take();
        let (sender, receiver) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("dftrace-shutdown".into())
            .spawn(move || {
                if let Some(tracer) = tracer {
                    let _ = tracer.shutdown_with_timeout(timeout);
                }
                if let Some(meter) = meter {
                    let _ = meter.shutdown_with_timeout(timeout);
                }
                let _ = sender.send(());
            });
        // A little grace past the timeout for the providers' own bookkeeping.
        let timed_out = !built
            || spawned.is_err()
            || receiver
                .recv_timeout(timeout + Duration::from_millis(500))
                .is_err();
        #[cfg(feature = "grpc")]
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so it is safe inside an async context too.
            runtime.shutdown_background();
        }
        // Library code reports; the caller decides what to print.
        self.report(timed_out)
    }

    fn report(&self, timed_out: bool) -> ShutdownReport {
        ShutdownReport {
            ended: self.counters.ended.load(Ordering::Relaxed),
            exported: self.counters.exported.load(Ordering::Relaxed),
            failed: self.counters.failed.load(Ordering::Relaxed),
            timed_out,
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let _ = self.shutdown_inner();
    }
}

/// The OpenTelemetry layers exactly as [`init`] installs them, for hosts that
/// assemble their own subscriber (and for dftrace's tests and bench, so the
/// spans they check carry the attributes a host exports): the
/// `tracing-opentelemetry` layer, behind an [`UnsampledTraceFilter`] that
/// disables the spans of traces the sampler dropped. Of `config` it reads
/// `context_activation`.
pub fn otel_layer<S>(
    tracer: opentelemetry_sdk::trace::Tracer,
    config: &ExportConfig,
) -> impl Layer<S> + use<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Spans dftrace builds itself after a query (operator spans) go through
    // the same tracer, found in the root span's extensions.
    let operator_tracer = tracer::TracerLayer::new(opentelemetry::global::BoxedTracer::new(
        Box::new(tracer.clone()),
    ));
    // Only what the span schema lists: no source locations, thread ids or
    // busy/idle times (each a clock read and a lock per enter and exit).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(config.context_activation);
    UnsampledTraceFilter
        .and_then(otel)
        .and_then(operator_tracer)
}

/// The global filter for `directives` (`RUST_LOG` syntax): a `Targets`
/// filter when they are only `target=level` pairs (the usual case), else an
/// `EnvFilter`. `EnvFilter` looks every entered span up in a locked map in
/// case a span directive applies, and operator spans are entered on every
/// poll; `Targets` keeps no per-span state.
pub fn filter_layer<S>(
    directives: &str,
) -> Result<Box<dyn Layer<S> + Send + Sync>, tracing_subscriber::filter::ParseError>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    // Parsed by `EnvFilter` either way, so both accept the same directives.
    let env_filter = EnvFilter::try_new(directives)?;
    // Span and field directives are the ones in brackets (`Targets` would
    // read `[span]` as a target name).
    if !directives.contains('[')
        && let Ok(targets) = directives.parse::<tracing_subscriber::filter::Targets>()
    {
        return Ok(targets.boxed());
    }
    Ok(env_filter.boxed())
}

/// The error for `directives` from `origin` (`export.filter`) that do not
/// parse.
fn filter_error(
    origin: &'static str,
    directives: &str,
) -> impl FnOnce(tracing_subscriber::filter::ParseError) -> BootstrapError {
    let directives = directives.to_owned();
    move |source| BootstrapError::Filter {
        origin,
        directives,
        source,
    }
}

/// A filter for one layer of a subscriber (`RUST_LOG` syntax), the
/// stateless `Targets` when the directives allow it (see [`filter_layer`]).
fn per_layer_filter<S>(
    directives: &str,
) -> Result<
    Box<dyn tracing_subscriber::layer::Filter<S> + Send + Sync>,
    tracing_subscriber::filter::ParseError,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let env_filter = EnvFilter::try_new(directives)?;
    if !directives.contains('[')
        && let Ok(targets) = directives.parse::<tracing_subscriber::filter::Targets>()
    {
        return Ok(Box::new(targets));
    }
    Ok(Box::new(env_filter))
}

/// Telemetry built from an [`ExportConfig`] but not installed yet: the
/// `tracing` subscriber (filter, OpenTelemetry layer, log layer) and the
/// OpenTelemetry providers behind it. Install it for the process
/// ([`Telemetry::install`]) or for the current thread
/// ([`Telemetry::set_default`]).
#[must_use = "telemetry does nothing until it is installed"]
pub struct Telemetry {
    subscriber: tracing::Dispatch,
    guard: TelemetryGuard,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The guard that flushes it, for a look at its sink before installing.
    pub fn guard(&self) -> &TelemetryGuard {
        &self.guard
    }

    /// Installs the subscriber for the whole process, with the `log`
    /// bridge, and the OpenTelemetry providers and propagator as the global
    /// ones. Once per process: a second call is
    /// [`BootstrapError::AlreadyInitialized`].
    pub fn install(self) -> Result<TelemetryGuard, BootstrapError> {
        if INITIALIZED.swap(true, Ordering::SeqCst) {
            return Err(BootstrapError::AlreadyInitialized);
        }
        if let Err(error) = self.subscriber.try_init() {
            INITIALIZED.store(false, Ordering::SeqCst);
            return Err(BootstrapError::SubscriberInstalled(error));
        }
        if let Some(provider) = &self.guard.tracer_provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
        }
        if let Some(provider) = &self.guard.meter_provider {
            opentelemetry::global::set_meter_provider(provider.clone());
        }
        Ok(self.guard)
    }

    /// Installs the subscriber for the current thread only, until the
    /// returned value is dropped; nothing global changes. Spans made on
    /// other threads (a multi-threaded runtime's workers) are not seen, and
    /// OpenTelemetry metrics, which go through the global meter provider,
    /// are not exported: use it on a current-thread runtime, in tests.
    pub fn set_default(self) -> ScopedTelemetry {
        let default = self.subscriber.set_default();
        ScopedTelemetry {
            guard: self.guard,
            _default: default,
        }
    }
}

/// Telemetry installed for one thread ([`Telemetry::set_default`]); dropping
/// it (or [`ScopedTelemetry::shutdown`]) flushes it and restores the
/// thread's previous subscriber.
#[derive(Debug)]
#[must_use = "dropping it uninstalls telemetry"]
pub struct ScopedTelemetry {
    guard: TelemetryGuard,
    _default: tracing::subscriber::DefaultGuard,
}

impl ScopedTelemetry {
    /// The guard: sink, trace file, counts so far.
    pub fn guard(&self) -> &TelemetryGuard {
        &self.guard
    }

    /// Flushes and stops the providers; reports what was delivered.
    pub fn shutdown(self) -> ShutdownReport {
        let ScopedTelemetry { guard, _default } = self;
        guard.shutdown()
    }
}

/// Builds telemetry from `config` and installs it for the process: what a
/// host calls once at start (`build(config)?.install()`).
///
/// Fails with a clear error on a bad setting, and when called a second time
/// in the process (the global subscriber can be set once).
pub fn init(config: &ExportConfig) -> Result<TelemetryGuard, BootstrapError> {
    build(config)?.install()
}

/// Builds telemetry from `config` without installing anything: the
/// exporters, the providers and the subscriber. Fails with a clear error on
/// a bad setting.
pub fn build(config: &ExportConfig) -> Result<Telemetry, BootstrapError> {
    let plan = crate::settings::resolve(config)?;
    let counters = Arc::new(SpanCounters::default());
    #[cfg(feature = "grpc")]
    let mut runtime = None;
    let mut trace_file = None;
    let mut meter_provider = None;

    let exporter: Option<crate::exporters::AnyExporter> = match &plan.sink {
        ResolvedSink::None | ResolvedSink::Console => None,
        ResolvedSink::File(path) => {
            trace_file = Some(path.clone());
            // Metrics too, beside the trace file: the embedded default
            // carries what the OTLP sink does.
            let metrics = sinks::metrics_path(path);
            let exporter = sinks::FileMetricExporter::create(&metrics).map_err(|source| {
                BootstrapError::TraceFile {
                    path: metrics.clone(),
                    source,
                }
            })?;
            let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
                .with_interval(Duration::from_millis(config.metric_export_interval_ms))
                .build();
            meter_provider = Some(
                SdkMeterProvider::builder()
                    .with_resource(plan.resource.clone())
                    .with_reader(reader)
                    .build(),
            );
            Some(crate::exporters::AnyExporter::File(
                FileExporter::create(path).map_err(|source| BootstrapError::TraceFile {
                    path: path.clone(),
                    source,
                })?,
            ))
        }
        ResolvedSink::Otlp { endpoint, .. } => {
            let (exporter, meter, _runtime) =
                crate::exporters::otlp_exporter(config, &plan, endpoint)?;
            #[cfg(feature = "grpc")]
            {
                runtime = _runtime;
            }
            meter_provider = meter;
            Some(exporter)
        }
    };

    let console = plan.console_summary;
    let tracer_provider = if exporter.is_some() || console {
        let mut builder = SdkTracerProvider::builder()
            .with_resource(plan.resource.clone())
            .with_sampler(plan.sampler.clone());
        if let Some(exporter) = exporter {
            let batch = BatchConfigBuilder::default()
                .with_max_queue_size(config.batch.max_queue_size)
                .with_max_export_batch_size(config.batch.max_export_batch_size)
                .with_scheduled_delay(Duration::from_millis(config.batch.schedule_delay_ms))
                .build();
            let processor = BatchSpanProcessor::builder(CountingExporter {
                inner: exporter,
                counters: Arc::clone(&counters),
            })
            .with_batch_config(batch)
            .build();
            builder = builder.with_span_processor(CountingProcessor {
                inner: processor,
                counters: Arc::clone(&counters),
                value_limit: config.attribute_value_length_limit,
            });
        }
        if console {
            builder = builder.with_span_processor(ConsoleSummary::default());
        }
        Some(builder.build())
    } else {
        None
    };

    // What is exported is dftrace's configuration's to say
    // (`export.filter`); `export.log_filter` (`RUST_LOG`) says what the log
    // layer prints, as it does for every other program, and never silently
    // drops the spans.
    let export_directives = config.filter.clone();
    let tracer = tracer_provider
        .as_ref()
        .map(|provider| provider.tracer(dftrace_registry::keys::SCOPE_NAME));
    let subscriber = match config.log_format {
        LogFormat::None => {
            let filter = filter_layer(&export_directives)
                .map_err(filter_error("export.filter", &export_directives))?;
            let otel = tracer.map(|tracer| otel_layer(tracer, config));
            tracing::Dispatch::new(tracing_subscriber::registry().with(filter).with(otel))
        }
        LogFormat::Compact | LogFormat::Json => {
            let export_filter = per_layer_filter(&export_directives)
                .map_err(filter_error("export.filter", &export_directives))?;
            let (origin, directives) = match &config.log_filter {
                Some(directives) if !directives.trim().is_empty() => {
                    ("export.log_filter (RUST_LOG)", directives.clone())
                }
                _ => ("export.filter", export_directives.clone()),
            };
            let log_filter =
                per_layer_filter(&directives).map_err(filter_error(origin, &directives))?;
            let log_layer = if config.log_format == LogFormat::Json {
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter)
                    .boxed()
            } else {
                tracing_subscriber::fmt::layer()
                    .compact()
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter)
                    .boxed()
            };
            tracing::Dispatch::new(
                tracing_subscriber::registry()
                    .with(
                        tracer.map(|tracer| otel_layer(tracer, config).with_filter(export_filter)),
                    )
                    .with(log_layer),
            )
        }
    };

    Ok(Telemetry {
        subscriber,
        guard: TelemetryGuard {
            tracer_provider,
            meter_provider,
            counters,
            shutdown_timeout: Duration::from_millis(config.shutdown_timeout_ms),
            trace_file,
            sink: plan.sink,
            #[cfg(feature = "grpc")]
            runtime,
            done: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sink;

    #[test]
    fn target_directives_get_the_stateless_filter_and_span_directives_still_work() {
        use tracing_subscriber::layer::SubscriberExt as _;
        type Registry = tracing_subscriber::Registry;
        let is_targets = |directives: &str| {
            let subscriber = tracing_subscriber::registry()
                .with(filter_layer::<Registry>(directives).expect("the directives parse"));
            subscriber
                .downcast_ref::<tracing_subscriber::filter::Targets>()
                .is_some()
        };
        assert!(is_targets("info"));
        assert!(is_targets("warn,dftrace::exec=debug"));
        assert!(
            !is_targets("info,[dftrace.query]=debug"),
            "a span directive"
        );

        // Either way the directives decide: info passes, debug does not.
        for directives in ["info", "info,[dftrace.query]=debug"] {
            let subscriber = tracing_subscriber::registry()
                .with(filter_layer::<Registry>(directives).expect("the directives parse"));
            tracing::subscriber::with_default(subscriber, || {
                assert!(!tracing::info_span!("kept").is_disabled(), "{directives}");
                assert!(
                    tracing::debug_span!("dropped").is_disabled(),
                    "{directives}"
                );
            });
        }

        let error = filter_layer::<Registry>("dftrace=loud")
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("expected one of"),
            "names what is accepted: {error}"
        );
    }

    #[test]
    fn rust_log_is_the_log_layers_filter_as_a_config_layer() {
        use dftrace_registry::DftraceConfig;
        let from_env = |vars: &[(&str, &str)]| {
            DftraceConfig::builder()
                .env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
                .build()
                .and_then(|config| config.section::<ExportConfig>())
                .expect("the section reads")
        };
        assert_eq!(
            from_env(&[("RUST_LOG", "my_service=debug")])
                .log_filter
                .as_deref(),
            Some("my_service=debug")
        );
        // A level alone is a filter too (3 is `info`), not a number.
        assert_eq!(
            from_env(&[("RUST_LOG", "3")]).log_filter.as_deref(),
            Some("3")
        );
        assert_eq!(
            from_env(&[]).log_filter,
            None,
            "read from the builder's environment layer, not from the process"
        );

        // A bad value is named as the setting and the variable it came from.
        let mut export = from_env(&[("RUST_LOG", "dftrace=loud")]);
        export.sink = Sink::None;
        export.log_format = LogFormat::Compact;
        let error = build(&export)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(
            error.contains("export.log_filter (RUST_LOG)") && error.contains("dftrace=loud"),
            "{error}"
        );
    }

    /// The only test in this binary that installs the global subscriber.
    #[test]
    fn a_second_init_is_a_clear_error() {
        let config = ExportConfig {
            sink: Sink::None,
            ..ExportConfig::default()
        };
        let first = init(&config).expect("the first init succeeds");
        let second = init(&config)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(second.contains("already initialized"), "{second}");
        drop(first);
    }
}
