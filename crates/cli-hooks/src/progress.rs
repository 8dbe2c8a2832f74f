//! The progress line of a statement that runs long: one line on stderr,
//! redrawn a few times a second (elapsed, rows so far, the operator busiest
//! since the last redraw), erased before the result prints. Only when
//! stderr is a terminal.

use dftrace_registry::RunningOperator;
use dftrace_rules::QueryProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Redraws per second, at most.
const REDRAW: Duration = Duration::from_millis(250);

/// The line of the statement running now, if it has one.
static CURRENT: Mutex<Option<ProgressLine>> = Mutex::new(None);

/// A statement's progress line and the thread that redraws it.
struct ProgressLine {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl ProgressLine {
    /// Stops redrawing and erases the line (returns once it is erased).
    fn finish(mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the line of a statement: drawn after `after` (at once for zero),
/// when stderr is a terminal and `after` is set.
pub(crate) fn start(progress: QueryProgress, after: Option<Duration>) {
    let Some(after) = after else { return };
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        // Cut to the terminal's width: a wrapped line could not be erased.
        ProgressStyle::with_template("{wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut last = HashMap::new();
    if after.is_zero() {
        // Drawn before the statement runs: a statement shorter than a
        // redraw still shows (and erases) it.
        bar.set_message(message(&progress, &mut last));
    }
    let stop = Arc::new((Mutex::new(false), Condvar::new()));
    let thread = {
        let stop = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("dftrace-progress".to_owned())
            .spawn(move || redraw(&bar, &progress, &stop, after, last))
            .ok()
    };
    let line = ProgressLine { stop, thread };
    // Joined after the lock is released.
    let previous = CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .replace(line);
    if let Some(previous) = previous {
        previous.finish();
    }
}

/// Erases the running statement's line, before its result prints.
pub fn before_output() {
    let line = CURRENT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(line) = line {
        line.finish();
    }
}

/// Erases the line when dropped: a statement cancelled with ^C (its
/// future dropped) does not leave it redrawing over the prompt.
#[derive(Debug)]
pub(crate) struct Erase;

impl Drop for Erase {
    fn drop(&mut self) {
        before_output();
    }
}

fn redraw(
    bar: &ProgressBar,
    progress: &QueryProgress,
    stop: &(Mutex<bool>, Condvar),
    after: Duration,
    mut last: HashMap<u64, u64>,
) {
    let (stopped, wake) = stop;
    // Drawn already when `after` is zero.
    let mut wait = if after.is_zero() { REDRAW } else { after };
    loop {
        let guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = wake
            .wait_timeout_while(guard, wait, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        if *guard {
            break;
        }
        // Drawn without the lock: a slow terminal does not hold up `finish`.
        drop(guard);
        bar.set_message(message(progress, &mut last));
        wait = REDRAW;
    }
    bar.finish_and_clear();
}

/// `dftrace: running 3.2 s, 1204 rows so far; busiest: HashJoinExec (2/4 done)`.
fn message(progress: &QueryProgress, last: &mut HashMap<u64, u64>) -> String {
    let operators = progress.operators();
    let rows = operators.first().map_or(0, |top| top.rows);
    let busiest = operators
        .iter()
        .max_by_key(|op| {
            (
                op.rows
                    .saturating_sub(last.get(&op.id).copied().unwrap_or(0)),
                op.id,
            )
        })
        .map(busiest_text)
        .unwrap_or_else(|| "planning".to_owned());
    last.clear();
    last.extend(operators.iter().map(|op| (op.id, op.rows)));
    format!(
        "dftrace: running {:.1} s, {rows} rows so far; busiest: {busiest}",
        progress.elapsed().as_secs_f64()
    )
}

fn busiest_text(op: &RunningOperator) -> String {
    format!(
        "{} ({}/{} done)",
        op.name, op.partitions_done, op.partitions
    )
}
