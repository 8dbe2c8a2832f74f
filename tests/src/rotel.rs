//! A real OTLP collector: `rotel` on free loopback ports, printing every
//! span it receives (with typed attributes) to a log the tests read.

use crate::moto::{free_port, wait_for_port};
use crate::{Peer, peer_binary};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `rotel-agent`, killed on drop.
#[derive(Debug)]
pub struct Rotel {
    child: Child,
    grpc_port: u16,
    http_port: u16,
    log: PathBuf,
}

impl Rotel {
    /// Starts rotel with OTLP gRPC and HTTP receivers, the blackhole exporter
    /// and detailed debug logging of traces, and waits until both listen.
    ///
    /// # Panics
    ///
    /// When `rotel-agent` is missing (with how to install it) or does not
    /// come up within 30 seconds.
    pub fn start() -> Rotel {
        Rotel::start_on(free_port(), free_port())
    }

    /// Like [`Rotel::start`], on given ports (to restart a collector where
    /// its clients expect it).
    ///
    /// # Panics
    ///
    /// As [`Rotel::start`].
    pub fn start_on(grpc_port: u16, http_port: u16) -> Rotel {
        static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let binary = peer_binary(Peer::Rotel);
        let log = std::env::temp_dir().join(format!(
            "dftrace-rotel-{}-{grpc_port}-{}.log",
            std::process::id(),
            STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let output = std::fs::File::create(&log).unwrap_or_else(|e| panic!("rotel log: {e}"));
        let child = Command::new(&binary)
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log-verbosity",
                "detailed",
            ])
            .env("NO_COLOR", "1")
            .stdout(Stdio::from(
                output.try_clone().unwrap_or_else(|e| panic!("{e}")),
            ))
            .stderr(Stdio::from(output))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let rotel = Rotel {
            child,
            grpc_port,
            http_port,
            log,
        };
        wait_for_port(grpc_port, "rotel (OTLP gRPC)");
        wait_for_port(http_port, "rotel (OTLP HTTP)");
        rotel
    }

    /// The OTLP/gRPC endpoint.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// The OTLP/HTTP base endpoint (`/v1/traces` is appended by exporters).
    pub fn http_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The gRPC port.
    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// The HTTP port, for raw requests.
    pub fn http_port(&self) -> u16 {
        self.http_port
    }

    /// Stops the collector process (`SIGSTOP`): connections stay open and
    /// requests queue in the kernel, unanswered, until [`Rotel::resume`] —
    /// a collector that cannot keep up, made certain instead of hoped for.
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Lets a [`Rotel::pause`]d collector run again (`SIGCONT`).
    ///
    /// # Panics
    ///
    /// When the signal cannot be sent.
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        // The shell's own `kill`: no signal crate, no procps needed.
        let status = Command::new("sh")
            .args(["-c", &format!("kill -{name} {}", self.child.id())])
            .status()
            .unwrap_or_else(|e| panic!("cannot run sh to send SIG{name} to rotel: {e}"));
        assert!(status.success(), "SIG{name} to rotel failed: {status}");
    }

    /// Everything rotel printed so far, with terminal colour codes removed.
    pub fn output(&self) -> String {
        let raw = std::fs::read(&self.log).unwrap_or_default();
        strip_ansi(&String::from_utf8_lossy(&raw))
    }

    /// How many received spans are named `name`.
    pub fn spans_named(&self, name: &str) -> usize {
        self.output()
            .lines()
            .filter(|line| {
                line.trim_start()
                    .strip_prefix("Name")
                    .map(|rest| rest.trim_start().trim_start_matches(':').trim())
                    == Some(name)
            })
            .count()
    }

    /// How many spans arrived, whatever their names.
    pub fn span_count(&self) -> usize {
        self.output()
            .lines()
            .filter(|line| {
                line.strip_prefix("Span #")
                    .is_some_and(|rest| rest.trim().chars().all(|c| c.is_ascii_digit()))
            })
            .count()
    }

    /// Waits until at least `count` spans named `name` arrived (at most
    /// `timeout`), and returns how many did.
    pub fn wait_for_spans(&self, name: &str, count: usize, timeout: Duration) -> usize {
        crate::wait::poll_until(timeout, || self.spans_named(name) >= count);
        self.spans_named(name)
    }

    /// Waits until at least `count` spans arrived, whatever their names (at
    /// most `timeout`), and returns how many did: for a test that knows how
    /// many spans its hosts exported.
    pub fn wait_for_span_count(&self, count: usize, timeout: Duration) -> usize {
        crate::wait::poll_until(timeout, || self.span_count() >= count);
        self.span_count()
    }
}

fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
