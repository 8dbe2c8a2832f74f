//! The session's own task context, handed back to the session.
//!
//! datafusion-ffi passes a task context across the boundary by value, and
//! the receiving side rebuilds it (`task_ctx.rs`): every configuration option
//! written out and parsed back, every function converted, and a *default*
//! runtime environment, so the session's object stores (`s3://`) and memory
//! pool are lost. It skips the rebuild for a context that comes from its own
//! library. So this side keeps the context the session gives each of its
//! nodes and gives that same context to the session's node below, instead
//! of a rebuilt one: the session's operators run with the session's own
//! context, as without dftrace.
//!
//! The plans this side exports are patched for it: their `execute` keeps the
//! session's context ([`SessionTaskContext`]) in the task context this side
//! runs with, and their `clone` (which the session calls when it imports a
//! plan) keeps the patch. The rule dftrace exports is patched so the plan it
//! returns is.
//!
//! The one module of dftrace with `unsafe` code: calling and providing
//! datafusion-ffi's C functions, as datafusion-ffi itself does.

#![allow(unsafe_code)]

use datafusion::error::DataFusionError;
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::SessionConfig;
use datafusion_ffi::execution::FFI_TaskContext;
use datafusion_ffi::execution_plan::{ExecutionPlanPrivateData, FFI_ExecutionPlan};
use datafusion_ffi::ffi_option::FFI_Result;
use datafusion_ffi::physical_optimizer::{FFI_PhysicalOptimizerContext, FFI_PhysicalOptimizerRule};
use datafusion_ffi::record_batch_stream::FFI_RecordBatchStream;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};

/// The task context the session handed to one `execute` of a node of this
/// side, until the session's node below takes it.
#[derive(Debug)]
pub(crate) struct SessionTaskContext(Mutex<Option<SessionContextHandle>>);

#[derive(Debug)]
struct SessionContextHandle(FFI_TaskContext);

// SAFETY: the handle owns a reference to the session's `Arc<TaskContext>`,
// which is `Send + Sync`, and its functions only read it. It is put and
// taken within one synchronous chain of `execute` calls.
unsafe impl Send for SessionContextHandle {}
// SAFETY: as above; it is only reached through the mutex.
unsafe impl Sync for SessionContextHandle {}

impl SessionTaskContext {
    /// The session's context, if this `execute` chain still holds it.
    pub(crate) fn take(context: &TaskContext) -> Option<FFI_TaskContext> {
        let held = context
            .session_config()
            .get_extension::<SessionTaskContext>()?;
        let handle = held.0.lock().unwrap_or_else(PoisonError::into_inner).take();
        handle.map(|handle| handle.0)
    }
}

type ClonePlan = unsafe extern "C" fn(&FFI_ExecutionPlan) -> FFI_ExecutionPlan;
type Optimize = unsafe extern "C" fn(
    &FFI_PhysicalOptimizerRule,
    &FFI_ExecutionPlan,
    datafusion_ffi::config::FFI_ConfigOptions,
) -> FFI_Result<FFI_ExecutionPlan>;
type OptimizeWithContext = unsafe extern "C" fn(
    &FFI_PhysicalOptimizerRule,
    &FFI_ExecutionPlan,
    &FFI_PhysicalOptimizerContext,
) -> FFI_Result<FFI_ExecutionPlan>;
type CloneRule = unsafe extern "C" fn(&FFI_PhysicalOptimizerRule) -> FFI_PhysicalOptimizerRule;

/// datafusion-ffi's own functions, which the patched ones call.
struct Originals {
    clone_plan: ClonePlan,
    optimize: Optimize,
    optimize_with_context: OptimizeWithContext,
    clone_rule: CloneRule,
}

static ORIGINALS: OnceLock<Originals> = OnceLock::new();

/// `plan` exported, with the patched `execute` and `clone`.
pub(crate) fn export_plan(
    plan: Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> FFI_ExecutionPlan {
    patch_plan(FFI_ExecutionPlan::new(plan, None))
}

fn patch_plan(mut ffi: FFI_ExecutionPlan) -> FFI_ExecutionPlan {
    // Only plans of this library: a foreign plan's functions are the
    // session's (FFI_ExecutionPlan::new hands a foreign plan back as is).
    if (ffi.library_marker_id)() == datafusion_ffi::get_library_marker_id() {
        ffi.execute = execute_keeping_context;
        ffi.clone = clone_patched_plan;
    }
    ffi
}

/// `rule` exported, returning patched plans.
pub(crate) fn export_rule(
    rule: Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>,
) -> FFI_PhysicalOptimizerRule {
    let ffi = FFI_PhysicalOptimizerRule::new(rule, None);
    ORIGINALS.get_or_init(|| {
        let probe = FFI_ExecutionPlan::new(
            Arc::new(datafusion::physical_plan::empty::EmptyExec::new(Arc::new(
                datafusion::arrow::datatypes::Schema::empty(),
            ))),
            None,
        );
        Originals {
            clone_plan: probe.clone,
            optimize: ffi.optimize,
            optimize_with_context: ffi.optimize_with_context,
            clone_rule: ffi.clone,
        }
    });
    patch_rule(ffi)
}

fn patch_rule(mut ffi: FFI_PhysicalOptimizerRule) -> FFI_PhysicalOptimizerRule {
    ffi.optimize = optimize_patched;
    ffi.optimize_with_context = optimize_with_context_patched;
    ffi.clone = clone_patched_rule;
    ffi
}

fn originals() -> &'static Originals {
    // Set by `export_rule` before any patched function can be called.
    ORIGINALS
        .get()
        .unwrap_or_else(|| unreachable!("dftrace's FFI rule exported without its originals"))
}

/// The runtime environment of the task contexts this side runs its nodes
/// with: one for the process (a default one per `execute` would set up a
/// memory pool, a disk manager and stores at each crossing of each query);
/// dftrace's wrappers take nothing from it, the session's nodes run with
/// the session's own.
fn this_side_runtime() -> Arc<RuntimeEnv> {
    static RUNTIME: LazyLock<Arc<RuntimeEnv>> = LazyLock::new(Arc::default);
    Arc::clone(&RUNTIME)
}

/// Runs a node of this side with a task context that holds the session's.
unsafe extern "C" fn execute_keeping_context(
    plan: &FFI_ExecutionPlan,
    partition: usize,
    context: FFI_TaskContext,
) -> FFI_Result<FFI_RecordBatchStream> {
    // SAFETY: `patch_plan` patches only plans of this library, whose private
    // data is datafusion-ffi's `ExecutionPlanPrivateData`.
    let node = unsafe { &(*plan.private_data.cast::<ExecutionPlanPrivateData>()).plan };
    // This side runs only dftrace's wrappers, which need no settings of the
    // session's but dftrace's own (added by the plan's top node).
    let held = SessionTaskContext(Mutex::new(Some(SessionContextHandle(context))));
    let config = SessionConfig::new().with_extension(Arc::new(held));
    let context = Arc::new(TaskContext::new(
        None,
        String::new(),
        config,
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        HashMap::new(),
        this_side_runtime(),
    ));
    match node.execute(partition, context) {
        Ok(stream) => FFI_Result::Ok(FFI_RecordBatchStream::new(stream, None)),
        Err(error) => FFI_Result::Err(error.to_string().as_str().into()),
    }
}

unsafe extern "C" fn clone_patched_plan(plan: &FFI_ExecutionPlan) -> FFI_ExecutionPlan {
    // SAFETY: datafusion-ffi's clone of a plan of this library.
    patch_plan(unsafe { (originals().clone_plan)(plan) })
}

unsafe extern "C" fn optimize_patched(
    rule: &FFI_PhysicalOptimizerRule,
    plan: &FFI_ExecutionPlan,
    config: datafusion_ffi::config::FFI_ConfigOptions,
) -> FFI_Result<FFI_ExecutionPlan> {
    // SAFETY: datafusion-ffi's optimize of this library's rule.
    patch_optimized(unsafe { (originals().optimize)(rule, plan, config) })
}

unsafe extern "C" fn optimize_with_context_patched(
    rule: &FFI_PhysicalOptimizerRule,
    plan: &FFI_ExecutionPlan,
    context: &FFI_PhysicalOptimizerContext,
) -> FFI_Result<FFI_ExecutionPlan> {
    // SAFETY: datafusion-ffi's optimize of this library's rule.
    patch_optimized(unsafe { (originals().optimize_with_context)(rule, plan, context) })
}

/// The plan an optimize returned, patched.
fn patch_optimized(optimized: FFI_Result<FFI_ExecutionPlan>) -> FFI_Result<FFI_ExecutionPlan> {
    match optimized {
        FFI_Result::Ok(plan) => FFI_Result::Ok(patch_plan(plan)),
        error => error,
    }
}

unsafe extern "C" fn clone_patched_rule(
    rule: &FFI_PhysicalOptimizerRule,
) -> FFI_PhysicalOptimizerRule {
    // SAFETY: datafusion-ffi's clone of this library's rule.
    patch_rule(unsafe { (originals().clone_rule)(rule) })
}

/// Runs the session's node `ffi` with the session's own task context when
/// this `execute` chain holds it; else `None`.
pub(crate) fn execute_with_session_context(
    ffi: &FFI_ExecutionPlan,
    partition: usize,
    context: &TaskContext,
) -> Option<datafusion::error::Result<datafusion::execution::SendableRecordBatchStream>> {
    let session = SessionTaskContext::take(context)?;
    // SAFETY: `ffi` is the session's export of one of its nodes.
    let result = unsafe { (ffi.execute)(ffi, partition, session) };
    Some(match result {
        FFI_Result::Ok(stream) => Ok(Box::pin(stream)),
        FFI_Result::Err(error) => Err(DataFusionError::Ffi(error.to_string())),
    })
}

/// The session's node `ffi` with new `children`, as the session rebuilds it
/// (what `ForeignExecutionPlan::replace_children` calls).
pub(crate) fn replace_session_children(
    ffi: &FFI_ExecutionPlan,
    children: impl Iterator<Item = FFI_ExecutionPlan>,
) -> datafusion::error::Result<FFI_ExecutionPlan> {
    // SAFETY: `ffi` is the session's export of one of its nodes.
    match unsafe { (ffi.with_new_children)(ffi, children.collect()) } {
        FFI_Result::Ok(ffi) => Ok(ffi),
        FFI_Result::Err(error) => Err(DataFusionError::Ffi(error.to_string())),
    }
}
