//! A real S3 endpoint: the `moto` server on a free loopback port.

use crate::{Peer, peer_binary};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `moto_server`, killed on drop.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
}

/// A free TCP port on loopback (the OS picks it; released before returning).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|error| panic!("cannot find a free port: {error}"))
}

/// Waits until something accepts connections on `port` on loopback.
///
/// # Panics
///
/// After 30 seconds, naming `what` did not come up.
pub fn wait_for_port(port: u16, what: &str) {
    crate::wait::wait_for(
        &format!("{what} listening on port {port}"),
        Duration::from_secs(30),
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        || "connections refused".to_owned(),
    );
}

impl MotoServer {
    /// Starts the server and waits until it accepts connections.
    ///
    /// # Panics
    ///
    /// When `moto_server` is missing (with how to install it) or does not
    /// come up within 30 seconds.
    pub fn start() -> MotoServer {
        let binary = peer_binary(Peer::Moto);
        let port = free_port();
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let server = MotoServer { child, port };
        wait_for_port(port, "moto_server");
        server
    }

    /// The endpoint URL, e.g. `http://127.0.0.1:5000`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket (moto accepts unsigned requests).
    ///
    /// # Panics
    ///
    /// When the server does not answer 200.
    pub fn create_bucket(&self, bucket: &str) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|error| panic!("cannot connect to moto: {error}"));
        let request = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        );
        stream
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "CreateBucket {bucket}: {response}"
        );
    }

    /// The `object_store` options that reach this server.
    pub fn s3_options(&self) -> Vec<(&'static str, String)> {
        vec![
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", "testing".to_owned()),
            ("aws_secret_access_key", "testing".to_owned()),
            ("aws_region", "us-east-1".to_owned()),
            ("aws_allow_http", "true".to_owned()),
        ]
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
