//! `dftrace._dftrace`: dftrace for datafusion-python sessions.
//!
//! datafusion-python runs its own copy of DataFusion; this extension runs
//! dftrace's, and the two meet through DataFusion's FFI crate: the session
//! calls `SessionRule` (exported as an `FFI_PhysicalOptimizerRule` capsule)
//! last among its physical optimizer rules, the rule runs dftrace's exec rule
//! on the (foreign) plan — by default `metrics-only`, which wraps only the
//! plan's top and builds the operator spans from the plan's metrics; with
//! `deferred`, every operator is wrapped — and the plan goes back to the
//! session, which executes it as usual. Spans are exported by this library's
//! own telemetry (`init`), from the same configuration layers a Rust host
//! reads.
//!
//! The Python package (`python/dftrace/__init__.py`) is the public API;
//! this module is its implementation.

mod crossing;
mod session_exec;
mod task_context;

use crossing::{Crossing, Statement};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DataFusionResult;
use datafusion::execution::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use dftrace::registry::DftraceSession;
use dftrace::registry::Section as _;
use dftrace::rules::RulesConfig;
use dftrace::{OperatorSpans, RulesOverrides as _, SessionStateBuilderExt as _};
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyCapsule, PyDict, PyFloat, PyInt, PyList, PyString};
use session_exec::{Instrument, SessionExec};
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

pyo3::create_exception!(
    dftrace,
    DftraceError,
    PyException,
    "A dftrace configuration or telemetry error; the message names what was wrong and what is accepted."
);

/// The capsule name datafusion-python looks for (`add_physical_optimizer_rule`).
const RULE_CAPSULE_NAME: &std::ffi::CStr = c"datafusion_physical_optimizer_rule";

/// The name the session lists the rule under.
const RULE_NAME: &str = "dftrace";

fn error(source: impl std::fmt::Display) -> PyErr {
    DftraceError::new_err(source.to_string())
}

/// dftrace's physical optimizer rules, as a Rust host's session would run
/// them, then [`SessionExec`] on top so the plan's root finds its settings.
#[derive(Debug)]
struct SessionRule {
    rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>>,
    session: Arc<DftraceSession>,
    /// Itself, for the top nodes it makes (to instrument a plan a later
    /// rule changed).
    this: Weak<SessionRule>,
}

impl SessionRule {
    /// The rules a session built with dftrace has beyond DataFusion's own,
    /// in their order, and that session's dftrace settings.
    fn new(dftrace: &dftrace::Dftrace) -> Result<Arc<Self>, dftrace::Error> {
        let defaults = SessionStateBuilder::new().with_default_features().build();
        let defaults: HashSet<&str> = defaults
            .physical_optimizers()
            .iter()
            .map(|rule| rule.name())
            .collect();
        let state = SessionStateBuilder::new()
            .with_default_features()
            .build_with_dftrace(dftrace)?;
        let rules = state
            .physical_optimizers()
            .iter()
            .filter(|rule| !defaults.contains(rule.name()))
            .cloned()
            .collect();
        let session = DftraceSession::of(&state).ok_or_else(|| {
            dftrace::Error::Session(dftrace::registry::RegistryError::NotConfigured)
        })?;
        Ok(Arc::new_cyclic(|this| SessionRule {
            rules,
            session,
            this: Weak::clone(this),
        }))
    }
}

impl Instrument for SessionRule {
    fn instrument(&self, plan: Arc<dyn ExecutionPlan>) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        // dftrace's rules read no option.
        self.optimize(plan, &ConfigOptions::default())
    }
}

impl PhysicalOptimizerRule for SessionRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> DataFusionResult<Arc<dyn ExecutionPlan>> {
        if plan.downcast_ref::<SessionExec>().is_some() {
            // Instrumented already: the session has this rule twice.
            return Ok(plan);
        }
        let statement = Arc::new(Statement::default());
        let session_plan = Arc::clone(&plan);
        let plan = self
            .rules
            .iter()
            .try_fold(Crossing::of_plan(plan, &statement), |plan, rule| {
                rule.optimize(plan, config)
            })?;
        // Through dftrace's wrappers (whose downcasts reach what they wrap)
        // to the session's top node, when the rules kept it as it was.
        let unchanged = plan
            .downcast_ref::<Crossing>()
            .is_some_and(|top| Arc::ptr_eq(top.foreign(), &session_plan));
        // Only the rule the telemetry handle holds runs, so it is alive.
        let instrument: Option<Arc<dyn Instrument>> = self.this.upgrade().map(|rule| rule as _);
        Ok(Arc::new(SessionExec::new(
            plan,
            unchanged.then_some(session_plan).zip(instrument),
            Arc::clone(&self.session),
            python_parent(),
            statement,
        )))
    }

    fn name(&self) -> &str {
        RULE_NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The Python application's current OpenTelemetry span, as a remote parent:
/// `None` when the application has not imported `opentelemetry` or no span
/// is current. datafusion-python plans a statement on the thread that
/// called it, so the span current there is the caller's.
fn python_parent() -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId};
    // `sys.modules`, looked up once: importing `sys` for each statement
    // was a third of the rule's own time on a short query.
    static MODULES: PyOnceLock<Py<PyDict>> = PyOnceLock::new();
    Python::attach(|py| {
        let modules = MODULES.import(py, "sys", "modules").ok()?;
        let trace = modules.get_item("opentelemetry.trace").ok()??;
        let current = trace
            .call_method0("get_current_span")
            .and_then(|span| span.call_method0("get_span_context"))
            .ok()?;
        let field = |name: &str| current.getattr(name).ok();
        if !field("is_valid")?.extract::<bool>().ok()? {
            return None;
        }
        let trace_id: u128 = field("trace_id")?.extract().ok()?;
        let span_id: u64 = field("span_id")?.extract().ok()?;
        let flags: u8 = field("trace_flags")?.extract().ok()?;
        let context = SpanContext::new(
            TraceId::from(trace_id),
            SpanId::from(span_id),
            TraceFlags::new(flags),
            true,
            Default::default(),
        );
        Some(opentelemetry::Context::new().with_remote_span_context(context))
    })
}

/// What `dftrace.init()` returns: the process's dftrace telemetry and the
/// rule that instruments a session.
#[pyclass(module = "dftrace._dftrace", frozen)]
struct Telemetry {
    dftrace: Mutex<Option<dftrace::Dftrace>>,
    rule: Arc<SessionRule>,
    preset: String,
}

#[pymethods]
impl Telemetry {
    /// The preset the configuration resolved to.
    #[getter]
    fn preset(&self) -> &str {
        &self.preset
    }

    /// An object datafusion-python's `add_physical_optimizer_rule` accepts.
    fn physical_optimizer_rule(&self) -> PhysicalOptimizerRuleCapsule {
        PhysicalOptimizerRuleCapsule {
            rule: Arc::clone(&self.rule),
        }
    }

    /// Waits until every ended query's spans are handed to the exporter.
    fn flush(&self, py: Python<'_>) -> bool {
        py.detach(|| match self.lock().as_ref() {
            Some(dftrace) => dftrace.flush(),
            None => true,
        })
    }

    /// Flushes and stops the exporters; returns what was exported. Later
    /// calls return an empty report.
    fn shutdown<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dftrace = self.lock().take();
        let report = py.detach(|| dftrace.map(dftrace::Dftrace::shutdown).unwrap_or_default());
        let dict = PyDict::new(py);
        dict.set_item("ended", report.ended)?;
        dict.set_item("exported", report.exported)?;
        dict.set_item("failed", report.failed)?;
        dict.set_item("dropped", report.dropped())?;
        dict.set_item("summary", report.to_string())?;
        Ok(dict)
    }

    fn __repr__(&self) -> String {
        let state = if self.lock().is_some() {
            "running"
        } else {
            "shut down"
        };
        format!("<dftrace.Telemetry preset={:?} {state}>", self.preset)
    }
}

impl Telemetry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<dftrace::Dftrace>> {
        self.dftrace.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `__datafusion_physical_optimizer_rule__` protocol object.
#[pyclass(module = "dftrace._dftrace", frozen)]
struct PhysicalOptimizerRuleCapsule {
    rule: Arc<SessionRule>,
}

#[pymethods]
impl PhysicalOptimizerRuleCapsule {
    fn __datafusion_physical_optimizer_rule__<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let rule: Arc<dyn PhysicalOptimizerRule + Send + Sync> = Arc::clone(&self.rule) as _;
        // No Tokio runtime handed over: with one, datafusion-ffi rebuilds
        // the plan's nodes of this library each time it exports them
        // (`pass_runtime_to_children`), with fresh operator records; and
        // nothing dftrace runs on this side spawns a task.
        let ffi = task_context::export_rule(rule);
        PyCapsule::new(py, ffi, Some(RULE_CAPSULE_NAME.to_owned()))
    }
}

/// A Python value of a setting as the configuration's JSON value.
fn setting_value(key: &str, value: &Bound<'_, PyAny>) -> PyResult<serde_json::Value> {
    use serde_json::Value;
    if value.is_instance_of::<PyBool>() {
        return Ok(Value::Bool(value.extract()?));
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(Value::from(value.extract::<i64>()?));
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(Value::from(value.extract::<f64>()?));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(Value::String(value.extract()?));
    }
    if let Ok(list) = value.cast::<PyList>() {
        return list
            .iter()
            .map(|item| setting_value(key, &item))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(dict) = value.cast::<PyDict>() {
        let mut map = serde_json::Map::new();
        for (field, item) in dict.iter() {
            let field: String = field.extract()?;
            let item = setting_value(&format!("{key}.{field}"), &item)?;
            map.insert(field, item);
        }
        return Ok(Value::Object(map));
    }
    Err(DftraceError::new_err(format!(
        "setting {key}: a {} is not a setting value; accepted: bool, int, float, str, \
         and lists or dicts of them",
        value.get_type().name()?
    )))
}

/// Reads the configuration (preset, file, `DFTRACE_*`/`OTEL_*`, then
/// `settings`, highest last), installs this library's telemetry and builds
/// the rule. See `dftrace.init` for the Python signature.
#[pyfunction]
#[pyo3(signature = (preset=None, config_file=None, settings=None))]
fn init(
    py: Python<'_>,
    preset: Option<&str>,
    config_file: Option<PathBuf>,
    settings: Option<&Bound<'_, PyDict>>,
) -> PyResult<Telemetry> {
    let preset = preset
        .map(str::parse::<dftrace::Preset>)
        .transpose()
        .map_err(error)?;
    let settings = settings
        .into_iter()
        .flat_map(|dict| dict.iter())
        .map(|(key, value)| {
            let key: String = key.extract()?;
            let value = setting_value(&key, &value)?;
            Ok((key, value))
        })
        .collect::<PyResult<Vec<_>>>()?;
    let builder = || {
        let mut builder = dftrace::config_builder();
        if let Some(preset) = preset {
            builder = builder.preset(preset);
        }
        if let Some(path) = &config_file {
            builder = builder.file(path);
        }
        for (key, value) in &settings {
            builder = builder.set(key, value.clone());
        }
        builder
    };
    let mut config = builder().build().map_err(error)?;
    if !config.sets_field(RulesConfig::NAME, "operator_spans") {
        // Each wrapper between the session's operators would be a crossing
        // of the FFI for every batch: operator spans come from the plan's
        // metrics unless the application asks otherwise.
        config = builder()
            .operator_spans(OperatorSpans::MetricsOnly)
            .build()
            .map_err(error)?;
    }
    let preset = config.preset().name().to_owned();
    let (dftrace, rule) = py
        .detach(|| -> Result<_, dftrace::Error> {
            let dftrace = dftrace::init_with(config)?;
            let rule = SessionRule::new(&dftrace)?;
            Ok((dftrace, rule))
        })
        .map_err(error)?;
    Ok(Telemetry {
        dftrace: Mutex::new(Some(dftrace)),
        rule,
        preset,
    })
}

#[pymodule]
fn _dftrace(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_function(wrap_pyfunction!(init, module)?)?;
    module.add_class::<Telemetry>()?;
    module.add_class::<PhysicalOptimizerRuleCapsule>()?;
    module.add("DftraceError", module.py().get_type::<DftraceError>())?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
