//! A local HTTP receiver for the webhook tests: answers each POST with the next status of its
//! script (then 200), and records every request (request line, headers and body).

#![allow(dead_code)]
// A test helper: it unwraps as the tests do.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as received.
#[derive(Debug, Clone)]
pub struct Request {
    /// `POST /path HTTP/1.1`.
    pub line: String,
    /// Every header line, as sent.
    pub headers: Vec<String>,
    /// The body.
    pub body: String,
}

impl Request {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Everything that went over the wire, for "never a secret" checks.
    pub fn raw(&self) -> String {
        format!("{}\n{}\n\n{}", self.line, self.headers.join("\n"), self.body)
    }
}

/// A receiver listening on loopback until the test ends.
pub struct Receiver {
    /// Its port.
    pub port: u16,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    /// Listens on a free port; answers with `statuses` in turn, then 200.
    pub fn start(statuses: &[u16]) -> Self {
        Self::start_on(0, statuses)
    }

    /// Listens on `port` (0: a free one).
    pub fn start_on(port: u16, statuses: &[u16]) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (log, script) = (requests.clone(), Arc::new(Mutex::new(statuses.to_vec())));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let status = {
                    let mut s = script.lock().unwrap();
                    if s.is_empty() { 200 } else { s.remove(0) }
                };
                if let Some(req) = serve(stream, status) {
                    log.lock().unwrap().push(req);
                }
            }
        });
        Receiver { port, requests }
    }

    /// A URL of this receiver with `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// What it received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, status: u16) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end().to_string();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
        headers.push(h);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let _ = write!(stream, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(Request {
        line: line.trim_end().to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A loopback port nothing listens on (for a receiver that is down).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    listener.local_addr().unwrap().port()
}
