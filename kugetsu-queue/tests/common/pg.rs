//! A throwaway PostgreSQL server for tests: `initdb` in a temporary directory, started on a
//! free loopback port as an unprivileged user, stopped (and removed) when dropped. Uses the
//! Debian `postgresql` package's programs. Where they are missing or the server cannot start,
//! [`Pg::start`] prints why and returns `None` (the test skips), except in CI
//! (`KUGETSU_REAL_POSTGRES=1` or `CI` set), where that is a failure.
#![allow(dead_code, clippy::unwrap_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The CA files of a server with [`Pg::require_tls`].
pub struct TlsFiles {
    /// The CA that signed the server's certificate (PEM).
    pub ca: PathBuf,
    /// A CA that did not.
    pub other_ca: PathBuf,
}

pub struct Pg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    as_postgres: bool,
    next_db: std::sync::atomic::AtomicU32,
    /// Whether commits wait for the disk (off for tests: faster, and a test's data need not
    /// survive a power cut; on for the benchmark, to compare with the fsynced file queue).
    durable: bool,
}

fn required() -> bool {
    std::env::var_os("KUGETSU_REAL_POSTGRES").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn bin_dir() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Pg {
    /// Starts a server, or says why not and returns `None` (outside CI).
    pub fn start() -> Option<Pg> {
        Pg::start_with(false)
    }

    /// [`Pg::start`], with commits flushed to disk as a production server does.
    pub fn start_durable() -> Option<Pg> {
        Pg::start_with(true)
    }

    fn start_with(durable: bool) -> Option<Pg> {
        match Pg::try_start(durable) {
            Ok(pg) => Some(pg),
            Err(why) if required() => panic!("PostgreSQL is required here but: {why}"),
            Err(why) => {
                eprintln!("SKIPPED: no PostgreSQL server for this test: {why}");
                None
            }
        }
    }

    fn try_start(durable: bool) -> Result<Pg, String> {
        let bin =
            bin_dir().ok_or("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")?;
        // As root (the server refuses to run as root), run it as the package's `postgres` user.
        let as_postgres = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        let dir =
            tempfile::Builder::new().prefix("kugetsu-pg-").tempdir().map_err(|e| e.to_string())?;
        if as_postgres {
            // The server refuses to run as root; its directories must belong to its user.
            let st = Command::new("chown")
                .args(["postgres:", dir.path().to_str().unwrap()])
                .status()
                .map_err(|e| e.to_string())?;
            if !st.success() {
                return Err("cannot chown the data directory to the postgres user".into());
            }
        }
        let pg = Pg {
            dir,
            bin,
            port: free_port(),
            as_postgres,
            next_db: std::sync::atomic::AtomicU32::new(0),
            durable,
        };
        let out = pg
            .command("initdb")
            .args(["-D", pg.data().to_str().unwrap(), "-A", "trust", "-U", "postgres", "--no-sync"])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb failed: {}", String::from_utf8_lossy(&out.stderr)));
        }
        pg.start_server()?;
        Ok(pg)
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c.current_dir(self.dir.path());
            c
        } else {
            Command::new(path)
        }
    }

    fn start_server(&self) -> Result<(), String> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
            self.port,
            self.dir.path().display(),
            if self.durable { "on" } else { "off" }
        );
        let out = self
            .command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap()])
            .args(["-l", self.dir.path().join("log").to_str().unwrap()])
            .args(["-w", "-t", "60", "-o", &opts, "start"])
            .output()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start failed: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Stops the server at once (as a crash or a restart would), keeping its data.
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap(), "-m", "immediate", "-w", "stop"])
            .output();
    }

    /// Starts it again on the same port, with the same data.
    pub fn restart(&self) {
        self.start_server().unwrap();
    }

    /// A fresh, empty database; its URL (with a password the server ignores under `trust`, so
    /// masking can be checked).
    pub fn database(&self) -> String {
        let n = self.next_db.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("t{n}");
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        self.url(&name)
    }

    /// A fresh database owned by a new role `user` that must log in with `password` (SCRAM)
    /// from loopback, where every other role is trusted; its URL, the password
    /// percent-encoded as libpq reads it.
    pub fn database_with_password(&self, user: &str, password: &str) -> String {
        let n = self.next_db.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let name = format!("t{n}");
        let mut admin = postgres::Client::connect(&self.url("postgres"), postgres::NoTls).unwrap();
        let quoted = password.replace('\'', "''");
        // One statement per call: several in one string run as one transaction, which
        // `CREATE DATABASE` refuses.
        for sql in [
            "SET password_encryption = 'scram-sha-256'".to_owned(),
            format!("CREATE ROLE {user} LOGIN PASSWORD '{quoted}'"),
            format!("CREATE DATABASE {name} OWNER {user}"),
        ] {
            admin.batch_execute(&sql).unwrap();
        }
        // The first matching line wins: this role's goes before the `trust` ones.
        let hba = self.data().join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(&hba, format!("host all {user} 127.0.0.1/32 scram-sha-256\n{rest}"))
            .unwrap();
        let out = self
            .command("pg_ctl")
            .args(["-D", self.data().to_str().unwrap(), "reload"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let encoded: String = password
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("postgres://{user}:{encoded}@127.0.0.1:{}/{name}", self.port)
    }

    /// Turns TLS on as a managed server has it: a throwaway CA, a certificate for `localhost`
    /// and 127.0.0.1 signed by it, and every unencrypted TCP connection refused
    /// (`hostnossl ... reject`). Make the test's databases first: [`Pg::database`] connects
    /// without TLS.
    pub fn require_tls(&self) -> TlsFiles {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca = |name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key).unwrap();
            (cert.pem(), Issuer::new(params, key))
        };
        let (ca_pem, issuer) = ca("kugetsu test CA");
        let (other_pem, _) = ca("some other CA");
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap();

        let data = self.data();
        std::fs::write(data.join("server.crt"), cert.pem()).unwrap();
        std::fs::write(data.join("server.key"), key.serialize_pem()).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            let private = std::fs::Permissions::from_mode(0o600);
            std::fs::set_permissions(data.join("server.key"), private).unwrap();
        }
        if self.as_postgres {
            let st = Command::new("chown")
                .args(["postgres:"])
                .arg(data.join("server.crt"))
                .arg(data.join("server.key"))
                .status()
                .unwrap();
            assert!(st.success());
        }
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).unwrap();
        text.push_str("\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        std::fs::write(&conf, text).unwrap();
        let hba = data.join("pg_hba.conf");
        let rest = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!(
                "hostssl all all 127.0.0.1/32 trust\nhostnossl all all 127.0.0.1/32 reject\n{rest}"
            ),
        )
        .unwrap();
        // A restart, not a reload: a reload with an unusable certificate would leave the
        // server running without TLS and the test passing for the wrong reason.
        self.stop();
        self.start_server().unwrap();

        let ca = self.dir.path().join("ca.pem");
        let other_ca = self.dir.path().join("other-ca.pem");
        std::fs::write(&ca, ca_pem).unwrap();
        std::fs::write(&other_ca, other_pem).unwrap();
        TlsFiles { ca, other_ca }
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres:s3cretpw@127.0.0.1:{}/{db}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.stop();
    }
}
