//! A small smart-HTTP git server on 127.0.0.1: `git http-backend` behind a CGI shim, with an
//! optional HTTP Basic password (the token) that every request must carry, and https through a
//! throwaway CA. It takes pushes as well as fetches.
//!
//! Also used by the CLI's tests, which include this file by path.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

pub struct GitHttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// Requests refused for missing or wrong credentials.
    pub refused: Arc<AtomicUsize>,
    /// While set, pack responses stop after their first bytes and the connection stays open
    /// without sending anything more: a server (or network) that stalls mid-transfer.
    pub stall: Arc<AtomicBool>,
    /// Responses that went silent because of `stall` (transfers now hanging).
    pub stalled: Arc<AtomicUsize>,
}

struct Config {
    root: PathBuf,
    home: PathBuf,
    token: Option<String>,
}

impl GitHttpServer {
    /// Serves the repositories under `root`; with `token`, requests need it as Basic password.
    pub fn start(root: &Path, home: &Path, token: Option<&str>) -> Self {
        Self::start_inner(root, home, token, None)
    }

    /// Like [`Self::start`], but speaking https with `tls`.
    pub fn start_tls(
        root: &Path,
        home: &Path,
        token: Option<&str>,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        Self::start_inner(root, home, token, Some(tls))
    }

    fn start_inner(
        root: &Path,
        home: &Path,
        token: Option<&str>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicUsize::new(0));
        let stall = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicUsize::new(0));
        let config = Arc::new(Config {
            root: root.to_path_buf(),
            home: home.to_path_buf(),
            token: token.map(str::to_string),
        });
        let handle = {
            let stop = Arc::clone(&stop);
            let refused = Arc::clone(&refused);
            let stall = Arc::clone(&stall);
            let stalled = Arc::clone(&stalled);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut stream) = stream else { continue };
                    let config = Arc::clone(&config);
                    let tls = tls.clone();
                    let behaviour = Behaviour {
                        refused: Arc::clone(&refused),
                        stall: Arc::clone(&stall),
                        stalled: Arc::clone(&stalled),
                        stop: Arc::clone(&stop),
                    };
                    std::thread::spawn(move || match tls {
                        None => {
                            let _ = serve(&mut stream, &config, &behaviour);
                        }
                        Some(tls) => {
                            let Ok(conn) = rustls::ServerConnection::new(tls) else { return };
                            let mut stream = rustls::StreamOwned::new(conn, stream);
                            let _ = serve(&mut stream, &config, &behaviour);
                            stream.conn.send_close_notify();
                            let _ = stream.flush();
                        }
                    });
                }
            })
        };
        GitHttpServer { port, stop, handle: Some(handle), refused, stall, stalled }
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}", self.port)
    }

    pub fn https_url(&self, name: &str) -> String {
        format!("https://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for GitHttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// What a connection's handler shares with the server.
struct Behaviour {
    refused: Arc<AtomicUsize>,
    stall: Arc<AtomicBool>,
    stalled: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn serve(
    stream: &mut (impl Read + Write),
    config: &Config,
    behaviour: &Behaviour,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body)?;
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }

    if let Some(token) = &config.token {
        let ok = header("authorization")
            .and_then(|a| a.strip_prefix("Basic ").map(decode_base64))
            .and_then(|creds| String::from_utf8(creds).ok())
            .is_some_and(|creds| creds.split_once(':').is_some_and(|(_, pass)| pass == token));
        if !ok {
            behaviour.refused.fetch_add(1, Ordering::SeqCst);
            reader.get_mut().write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\n\
                  Content-Length: 0\r\nConnection: close\r\n\r\n",
            )?;
            return Ok(());
        }
    }

    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &config.home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_PROJECT_ROOT", &config.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // Pushes too (http-backend refuses them to an unauthenticated user by default).
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("CONTENT_LENGTH", body.len().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(ct) = header("content-type") {
        cmd.env("CONTENT_TYPE", ct);
    }
    if let Some(p) = header("git-protocol") {
        cmd.env("GIT_PROTOCOL", p);
    }
    if let Some(e) = header("content-encoding") {
        cmd.env("HTTP_CONTENT_ENCODING", e);
    }
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut output = Vec::new();
    child.stdout.take().expect("stdout").read_to_end(&mut output)?;
    let _ = writer.join();
    child.wait()?;

    let split = find(&output, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(&output, b"\n\n").map(|i| (i, 2)));
    let (head, rest) = match split {
        Some((i, n)) => (String::from_utf8_lossy(&output[..i]).into_owned(), &output[i + n..]),
        None => (String::new(), &output[..]),
    };
    let mut status = "200 OK".to_string();
    let mut response = Vec::new();
    let mut hdrs = String::new();
    for h in head.lines() {
        if let Some(s) = h.strip_prefix("Status:") {
            status = s.trim().to_string();
        } else if !h.is_empty() {
            hdrs.push_str(h);
            hdrs.push_str("\r\n");
        }
    }
    response.extend_from_slice(
        format!(
            "HTTP/1.1 {status}\r\n{hdrs}Content-Length: {}\r\nConnection: close\r\n\r\n",
            rest.len()
        )
        .as_bytes(),
    );
    response.extend_from_slice(rest);
    let out = reader.get_mut();
    if behaviour.stall.load(Ordering::SeqCst) && method == "POST" {
        // Headers and a few bytes, then silence on an open connection.
        out.write_all(&response[..response.len().min(head.len() + 120)])?;
        out.flush()?;
        behaviour.stalled.fetch_add(1, Ordering::SeqCst);
        while !behaviour.stop.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        return Ok(());
    }
    out.write_all(&response)?;
    out.flush()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn decode_base64(s: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.trim().bytes() {
        let Some(v) = value(c) else { continue };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Writes `ca.pem`, `cert.der` and `key.der` for 127.0.0.1 into `dir`.
pub fn make_certificates(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "kugetsu test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("cert.der"), cert.der()).unwrap();
    std::fs::write(dir.join("key.der"), key.serialize_der()).unwrap();
}

pub fn server_config(dir: &Path) -> Arc<rustls::ServerConfig> {
    let cert =
        rustls::pki_types::CertificateDer::from(std::fs::read(dir.join("cert.der")).unwrap());
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(std::fs::read(dir.join("key.der")).unwrap())
            .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}
