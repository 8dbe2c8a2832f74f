//! A host that takes one piece of dftrace: redacted previews, as the
//! preview function of `datafusion-tracing`'s own instrumentation, with its
//! own `tracing` subscriber. No dftrace registry, config file or telemetry.

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use datafusion_tracing::{InstrumentationOptions, instrument_with_info_spans};
use dftrace_preview_redaction::{PreviewConfig, preview_fn};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};

/// Keeps every `datafusion.preview` value recorded on any span.
#[derive(Clone, Default)]
struct Previews(Arc<Mutex<Vec<String>>>);

impl Visit for Previews {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "datafusion.preview" {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(value.to_owned());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Previews {
    fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
        attrs.record(&mut self.clone());
    }

    fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
        values.record(&mut self.clone());
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("component-host: ok");
            ExitCode::SUCCESS
        }
        Err(problem) => {
            eprintln!("component-host: {problem}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let previews = Previews::default();
    let _subscriber =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(previews.clone()));

    // The default deny list masks `*password*` columns.
    let options = InstrumentationOptions::builder()
        .preview_limit(5)
        .preview_fn(preview_fn(&PreviewConfig::default())?)
        .build();
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_physical_optimizer_rule(instrument_with_info_spans!(options: options))
        .build();
    let ctx = SessionContext::new_with_state(state);
    // A table whose column is named `password` in every operator: a preview
    // function sees only the batch, so redaction here is by column name
    // (dftrace-rules' operator spans also follow aliases and derivations).
    let users = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef),
        ("name", Arc::new(StringArray::from(vec!["ada", "bob"]))),
        ("password", Arc::new(StringArray::from(vec!["hunter2", "swordfish"]))),
    ])?;
    ctx.register_batch("users", users)?;
    let batches = ctx
        .sql("SELECT name, password FROM users WHERE id > 0 ORDER BY id")
        .await?
        .collect()
        .await?;
    let rows: usize = batches.iter().map(|batch| batch.num_rows()).sum();
    if rows != 2 {
        return Err(format!("expected 2 rows, got {rows}").into());
    }

    let previews = previews.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if !previews.iter().any(|preview| preview.contains("ada")) {
        return Err(format!("no preview shows the rows: {previews:?}").into());
    }
    if !previews.iter().any(|preview| preview.contains(&PreviewConfig::default().mask)) {
        return Err(format!("no preview shows the mask: {previews:?}").into());
    }
    if let Some(leak) = previews
        .iter()
        .find(|preview| preview.contains("hunter2") || preview.contains("swordfish"))
    {
        return Err(format!("a preview shows a password: {leak}").into());
    }
    Ok(())
}
