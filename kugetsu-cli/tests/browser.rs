//! The dashboard in a real headless Chromium (Debian's `chromium`), driven over the DevTools
//! protocol: the page loads without a console error, takes the token out of the address bar,
//! shows the agents in their states, follows a `start` as it begins and ends, fits a phone's
//! screen, and its "stop" button ends a running agent, recorded as interrupted; another local
//! server the browser visits afterwards receives nothing that authorizes anything.
//!
//! Without Chromium this prints SKIPPED and passes, unless `KUGETSU_REAL_BROWSER` or `CI` is set
//! (CI sets it): then a browser that cannot start is a failure. With
//! `KUGETSU_DASHBOARD_SCREENSHOT=<file>` the page is also saved there as a PNG (README's
//! picture is made so).

#![allow(clippy::unwrap_used)]

mod dashboard_support;
mod support;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dashboard_support::Dashboard;
use serde_json::{Value, json};
use support::{Env, HANG, ready, wait_exit};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// Whether a browser that cannot start fails the test.
fn required() -> bool {
    ["KUGETSU_REAL_BROWSER", "CI"].iter().any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty()))
}

struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    port: u16,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Starts headless Chromium with the DevTools protocol on a free loopback port.
    fn start() -> Result<Browser, String> {
        let program = std::env::var("KUGETSU_CHROMIUM").unwrap_or_else(|_| "chromium".into());
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&program);
        cmd.args([
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
        // Chromium refuses to run as root inside its sandbox.
        let root =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
        if root {
            cmd.arg("--no-sandbox");
        }
        let mut child = cmd
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("DevTools listening on ws://127.0.0.1:") {
                    let _ = tx.send(rest.split('/').next().unwrap_or("").parse::<u16>().ok());
                }
            }
        });
        let port = match rx.recv_timeout(HANG) {
            Ok(Some(port)) => port,
            _ => {
                let _ = child.kill();
                return Err(format!("{program} did not open its DevTools port"));
            }
        };
        Ok(Browser { child, _profile: profile, port })
    }

    /// The DevTools connection of the browser's first page.
    fn page(&self) -> Cdp {
        let list: Value = serde_json::from_str(
            &reqwest::blocking::get(format!("http://127.0.0.1:{}/json/list", self.port))
                .unwrap()
                .text()
                .unwrap(),
        )
        .unwrap();
        let url = list
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap()
            .to_owned();
        let (ws, _) = tungstenite::connect(url).unwrap();
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(HANG)).unwrap();
        }
        let mut cdp = Cdp { ws, next: 0, events: Vec::new() };
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            cdp.call(domain, json!({}));
        }
        cdp
    }
}

/// A DevTools protocol session with one page.
struct Cdp {
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    next: u64,
    events: Vec<Value>,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let msg = json!({"id": id, "method": method, "params": params});
        self.ws.send(Message::Text(msg.to_string().into())).unwrap();
        loop {
            let Message::Text(text) = self.ws.read().unwrap() else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == id {
                assert!(v["error"].is_null(), "{method}: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page.
    fn wait(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + HANG;
        while self.eval(expression) != json!(true) {
            assert!(Instant::now() < deadline, "gave up waiting for the page to show {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Clicks the middle of the first element `selector` matches, as a mouse does.
    fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); \
             return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
        ));
        let (x, y) = (at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
        for kind in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1}),
            );
        }
    }

    /// Every console error and uncaught exception seen so far.
    fn errors(&self) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|e| {
                (e["method"] == "Runtime.consoleAPICalled" && e["params"]["type"] == "error")
                    || e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .collect()
    }
}

fn script(env: &Env, turn: &str) {
    std::fs::write(
        env.tmp.path().join("script.json"),
        format!(
            r#"{{"turns": [{turn}], "default": {{"mode": "tool", "path": "WORK.md", "content": "done\n", "text": "wrote WORK.md"}}}}"#
        ),
    )
    .unwrap();
}

fn row_state(issue: &str) -> String {
    format!("document.querySelector('tr[data-ref=\"local.test/demo/app#{issue}\"]')?.dataset.state")
}

#[test]
fn the_page_in_a_real_browser_shows_follows_and_stops_the_agents() {
    let browser = match Browser::start() {
        Ok(b) => b,
        Err(why) if !required() => {
            eprintln!(
                "SKIPPED: no headless Chromium ({why}); set KUGETSU_REAL_BROWSER=1 to require it"
            );
            return;
        }
        Err(why) => panic!("a real headless Chromium is required here: {why}"),
    };
    let env = ready();
    // Agents in several states, and a queue with work waiting and work that failed.
    assert_eq!(env.run(&["start", "#2", "add the changelog"]).code, 0);
    script(&env, r#"{"mode": "error", "message": "provider overloaded"}"#);
    assert_ne!(env.run(&["start", "#3", "upgrade the parser"]).code, 0);
    script(&env, r#"{"mode": "permission", "permission": "external_directory (/etc/*)"}"#);
    assert_ne!(env.run(&["start", "#4", "read the system config"]).code, 0);
    assert_eq!(env.run(&["delegate", "plan the 2.0 release"]).code, 0);
    assert_eq!(env.run(&["queue", "enqueue", "#5", "write the migration guide"]).code, 0);
    let d = Dashboard::start(&env);

    let mut page = browser.page();
    page.call("Page.navigate", json!({"url": d.url}));
    page.wait("the live stream", "document.getElementById('conn')?.textContent === 'live'");
    assert_eq!(page.eval("location.search"), json!(""), "the token left the address bar");
    assert_eq!(page.eval("sessionStorage.getItem('kugetsu-token')"), json!(d.token));
    for (issue, state) in [("2", "idle"), ("3", "failed"), ("4", "blocked")] {
        assert_eq!(page.eval(&row_state(issue)), json!(state), "#{issue}");
    }

    // A start begins: the page shows it running without a reload.
    script(&env, r#"{"mode": "hang", "after_output": true}"#);
    let start = env
        .command(&["start", "#1", "fix the login bug"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    page.wait("#1 running", &format!("{} === 'running'", row_state("1")));
    page.wait("its stop button", "!!document.querySelector('button[data-action=stop]')");

    let shot = page.call("Page.captureScreenshot", json!({"format": "png"}));
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["data"].as_str().unwrap(),
    )
    .unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    if let Ok(path) = std::env::var("KUGETSU_DASHBOARD_SCREENSHOT") {
        std::fs::write(&path, &png).unwrap();
    }

    // A click on stop ends it, recorded as interrupted, as Ctrl-C on the start would.
    page.click("button[data-action=stop]");
    page.wait("#1 interrupted", &format!("{} === 'interrupted'", row_state("1")));
    let (code, _) = wait_exit(start);
    assert_eq!(code, Some(130), "the start ended as an interrupted run");

    // A phone's screen: nothing wider than the screen (tables scroll inside their section).
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    page.wait(
        "the page fitting a phone",
        "document.documentElement.scrollWidth <= window.innerWidth",
    );

    let errors = page.errors();
    assert!(errors.is_empty(), "console errors: {errors:#?}");
}

/// A plain HTTP server on another loopback port (an agent's dev server): records every
/// request it gets, whole, and answers each with an empty page.
fn other_server() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
            let mut buf = vec![0u8; 64 * 1024];
            let n = stream.read(&mut buf).unwrap_or(0);
            record.lock().unwrap().push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = "<!doctype html><title>dev server</title><p>hello</p>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// The browser that opened the dashboard then visits another server on the same host (the
/// dev server an agent just started): that server receives nothing that authorizes anything
/// (no cookie, no token, no referrer), and what its page sends to the dashboard is refused.
/// Coming back, a reload of the dashboard works from the token the tab kept.
#[test]
fn another_local_server_visited_after_the_dashboard_gets_nothing_that_authorizes() {
    let browser = match Browser::start() {
        Ok(b) => b,
        Err(why) if !required() => {
            eprintln!(
                "SKIPPED: no headless Chromium ({why}); set KUGETSU_REAL_BROWSER=1 to require it"
            );
            return;
        }
        Err(why) => panic!("a real headless Chromium is required here: {why}"),
    };
    let env = ready();
    assert_eq!(env.run(&["start", "#2", "add the changelog"]).code, 0);
    let d = Dashboard::start(&env);
    let (port, seen) = other_server();

    let mut page = browser.page();
    page.call("Page.navigate", json!({"url": d.url}));
    page.wait("the live stream", "document.getElementById('conn')?.textContent === 'live'");
    page.wait("#2 idle", &format!("{} === 'idle'", row_state("2")));

    for host in ["127.0.0.1", "localhost"] {
        let other = format!("http://{host}:{port}/");
        page.call("Page.navigate", json!({"url": other}));
        page.wait("the other page", "document.title === 'dev server'");
        // The other page tries the dashboard with whatever the browser would add on its own.
        let dashboard = &d.base;
        page.eval(&format!(
            "Promise.allSettled([\
               fetch('{dashboard}/api/delegate', {{method: 'POST', credentials: 'include', \
                 mode: 'no-cors', headers: {{'Content-Type': 'text/plain'}}, \
                 body: JSON.stringify({{message: 'rm -rf ~'}})}}),\
               fetch('{dashboard}/api/sessions', {{credentials: 'include'}})\
             ]).then(r => r.map(x => x.status))"
        ));
    }
    let requests = seen.lock().unwrap().clone();
    assert!(!requests.is_empty(), "the other server was visited");
    for request in &requests {
        let lower = request.to_ascii_lowercase();
        assert!(!request.contains(&d.token), "the token reached the other server:\n{request}");
        assert!(!lower.contains("\ncookie:"), "a cookie reached the other server:\n{request}");
        assert!(!lower.contains("\nauthorization:"), "{request}");
        let referer = lower.lines().find(|l| l.starts_with("referer:")).unwrap_or("");
        assert!(!referer.contains(&d.base), "the dashboard's address:\n{request}");
    }
    assert!(
        !env.path("queue/items").exists()
            || std::fs::read_dir(env.path("queue/items")).unwrap().next().is_none(),
        "the other page's POST was refused"
    );

    // Back to the dashboard without the token in the address, then a reload: the tab kept it.
    page.call("Page.navigate", json!({"url": format!("{}/", d.base)}));
    page.wait("the live stream", "document.getElementById('conn')?.textContent === 'live'");
    page.call("Page.reload", json!({}));
    page.wait("the live stream again", "document.getElementById('conn')?.textContent === 'live'");
    page.wait("#2 idle", &format!("{} === 'idle'", row_state("2")));
    assert_eq!(page.eval("document.cookie"), json!(""), "no cookie at all");
}
