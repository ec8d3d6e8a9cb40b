//! A `kugetsu dashboard` started as a shell starts it, on a free loopback port, with the URL
//! and token it prints, and a blocking HTTP client for the tests.

#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};

use crate::support::{Env, HANG};

/// A running dashboard; killed when dropped.
pub struct Dashboard {
    /// The process.
    pub child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The token.
    pub token: String,
    /// The URL it printed to open.
    pub url: String,
    /// A client.
    pub http: reqwest::blocking::Client,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Dashboard {
    /// Starts `kugetsu dashboard --listen 127.0.0.1:0` in `env` and reads the URL it prints.
    pub fn start(env: &Env) -> Dashboard {
        let mut child = env
            .command(&["dashboard", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let url = loop {
            let line = lines.next().expect("the dashboard printed its URL").unwrap();
            if let Some(url) = line.strip_prefix("open: ") {
                break url.to_owned();
            }
        };
        let (base, token) = url.split_once("/?token=").unwrap();
        let http = reqwest::blocking::Client::builder().timeout(HANG).build().unwrap();
        Dashboard { child, base: base.to_owned(), token: token.to_owned(), url: url.clone(), http }
    }

    /// `GET path` with the token in the header: status and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        let r =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// `POST path` with a JSON body and the token in the header: status and body.
    pub fn post(&self, path: &str, body: &serde_json::Value) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// Opens an event stream (`path`) and returns a reader of its events.
    pub fn stream(&self, path: &str) -> Events {
        let r =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
        Events { lines: BufReader::new(Box::new(r)) }
    }
}

/// A server-sent event stream being read.
pub struct Events {
    lines: BufReader<Box<dyn Read + Send>>,
}

impl Events {
    /// The next event: its name and data.
    pub fn next(&mut self) -> (String, String) {
        let (mut event, mut data) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).unwrap();
            assert!(n > 0, "the event stream ended");
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                if !event.is_empty() || !data.is_empty() {
                    return (event, data.join("\n"));
                }
                continue;
            }
            if let Some(v) = line.strip_prefix("event:") {
                event = v.trim().to_owned();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
            }
        }
    }

    /// Reads events until one named `name` whose data satisfies `pred`; returns its data.
    pub fn until(&mut self, name: &str, mut pred: impl FnMut(&str) -> bool) -> String {
        loop {
            let (event, data) = self.next();
            if event == name && pred(&data) {
                return data;
            }
        }
    }
}
