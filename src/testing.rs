//! Test support, not shipped: throwaway PostgreSQL servers started and stopped from
//! Rust, their TLS certificates, free ports, and children that die with the test run.
//!
//! Compiled only with the `test-support` feature, which the integration tests turn on
//! through the crate's dev-dependency on itself; release builds of the binaries leave it
//! out. Production code finds PostgreSQL's programs through [`crate::db::pgbin`].
//!
//! PostgreSQL refuses to run as root, so when this process is root the server and its
//! tools run as the `postgres` user. A server is a child process that dies with this
//! process (`PR_SET_PDEATHSIG`), so a crashed or interrupted test run leaves no
//! PostgreSQL behind; its directory is removed on drop, and directories left by dead
//! processes are swept at the next start.

use crate::db::pgbin::{as_postgres_user, give_to_postgres_user, PgBin};
use crate::{Error, Result};
use postgres::{Client, NoTls};
use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A PostgreSQL server in its own directory, listening on 127.0.0.1 only, trust auth.
pub struct LocalServer {
    root: PathBuf,
    port: u16,
    bin: PgBin,
    child: Option<Child>,
    remove_on_drop: bool,
}

/// Settings for throwaway clusters: durability off (speed), loopback only.
const TEST_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "127.0.0.1"),
    ("unix_socket_directories", ""),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("max_connections", "200"),
    ("shared_buffers", "32MB"),
    ("wal_level", "replica"),
    ("max_wal_senders", "10"),
    ("max_replication_slots", "10"),
    ("hot_standby", "on"),
    ("log_min_messages", "warning"),
];

impl LocalServer {
    /// Creates a fresh cluster in a new directory under the system temp dir (which
    /// the `postgres` user can reach, unlike a root-only checkout) and starts it.
    pub fn start_fresh() -> Result<LocalServer> {
        Self::start_fresh_with(&[])
    }

    /// Like `start_fresh`, with extra `-c name=value` settings for this first start
    /// (e.g. `synchronous_standby_names` for a primary).
    pub fn start_fresh_with(settings: &[(&str, &str)]) -> Result<LocalServer> {
        let mut server = Self::unstarted()?;
        server.init()?;
        server.start_with(settings)?;
        Ok(server)
    }

    /// Like `start_fresh`, with `ssl = on` and a certificate for 127.0.0.1 issued by a
    /// test CA made for it with the `openssl` command (in the server's directory, removed
    /// with it).
    pub fn start_fresh_with_tls() -> Result<(LocalServer, TestCerts)> {
        let mut server = Self::unstarted()?;
        server.init()?;
        let certs = TestCerts::make(&server.root)?;
        let cert = certs.server_cert.display().to_string();
        let key = certs.server_key.display().to_string();
        server.start_with(&[
            ("ssl", "on"),
            ("ssl_cert_file", &cert),
            ("ssl_key_file", &key),
        ])?;
        Ok((server, certs))
    }

    /// A streaming replica of `primary`, made by `scripts/make-replica.sh` (the same
    /// script the local stack and the hosts use) through replication slot `name`, which
    /// is also its `application_name`; started, and accepting read-only connections.
    pub fn replica_of(primary: &LocalServer, name: &str) -> Result<LocalServer> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-replica.sh");
        Self::replica_of_using(primary, name, &script)
    }

    /// `replica_of` with the `make-replica.sh` at `script`.
    pub fn replica_of_using(
        primary: &LocalServer,
        name: &str,
        script: &Path,
    ) -> Result<LocalServer> {
        let mut server = Self::unstarted()?;
        fs::create_dir_all(&server.root)
            .map_err(|e| Error::io(format!("creating {}", server.root.display()), e))?;
        fs::set_permissions(&server.root, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("setting permissions on the cluster directory", e))?;
        // The script runs as us and switches to the postgres user itself when root.
        let output = Command::new(script)
            .args(["--primary-host", "127.0.0.1", "--primary-port"])
            .arg(primary.port().to_string())
            .args(["--user", "postgres", "--sslmode", "prefer", "--slot", name])
            .args(["--application-name", name, "--data-dir"])
            .arg(server.data_dir())
            .env("DOB_PG_BIN", server.bin.dir())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| Error::io(format!("running {}", script.display()), e))?;
        if !output.status.success() {
            return Err(Error::process(
                format!("make-replica.sh failed ({})", output.status),
                String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            ));
        }
        server.start()?;
        Ok(server)
    }

    /// A server value with its own directory name, not yet initialised or started.
    fn unstarted() -> Result<LocalServer> {
        sweep_stale_dirs();
        let bin = PgBin::locate()?;
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "dob-pg-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        Ok(LocalServer {
            root,
            port: 0,
            bin,
            child: None,
            remove_on_drop: true,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn bin(&self) -> &PgBin {
        &self.bin
    }

    /// A URL for database `db` as the superuser.
    pub fn url(&self, db: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{db}", self.port)
    }

    pub fn connect(&self, db: &str) -> Result<Client> {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("postgres")
            .dbname(db)
            .connect_timeout(Duration::from_secs(5))
            .connect(NoTls)
            .map_err(|e| Error::db(format!("connecting to {}", self.url(db)), e))
    }

    pub fn create_database(&self, name: &str) -> Result<()> {
        let mut client = self.connect("postgres")?;
        client
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .map_err(|e| Error::db(format!("creating database {name}"), e))
    }

    fn init(&mut self) -> Result<()> {
        let data = self.data_dir();
        fs::create_dir_all(&data)
            .map_err(|e| Error::io(format!("creating {}", data.display()), e))?;
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("setting permissions on the cluster directory", e))?;
        fs::set_permissions(&data, fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io("setting permissions on the data directory", e))?;
        give_to_postgres_user(&data)?;
        let mut initdb = Command::new(self.bin.tool("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .current_dir(&self.root);
        run_to_completion(initdb, "initdb")
    }

    /// Starts the server on a free port and waits until it accepts connections.
    pub fn start(&mut self) -> Result<()> {
        self.start_with(&[])
    }

    /// Like `start`, with extra `-c name=value` settings (they override the defaults).
    pub fn start_with(&mut self, settings: &[(&str, &str)]) -> Result<()> {
        let mut last_error = None;
        // A free port can be taken between choosing it and binding it; try a few.
        for _ in 0..3 {
            let port = if self.port == 0 {
                free_port()?
            } else {
                self.port
            };
            match self.spawn_on(port, settings) {
                Ok(()) => return Ok(()),
                Err(err) => last_error = Some(err),
            }
        }
        Err(last_error.unwrap_or_else(|| Error::other("starting PostgreSQL")))
    }

    fn spawn_on(&mut self, port: u16, settings: &[(&str, &str)]) -> Result<()> {
        let log_path = self.root.join("postgres.log");
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| Error::io(format!("opening {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io("duplicating the log fd", e))?;
        let mut cmd = Command::new(self.bin.tool("postgres"));
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-p")
            .arg(port.to_string());
        for (name, value) in TEST_SETTINGS.iter().chain(settings) {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.current_dir(&self.root)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut child = spawn_tied_to_process(cmd)?;
        self.port = port;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                self.port = 0;
                return Err(Error::process(
                    format!("PostgreSQL exited during start-up ({status})"),
                    tail(&log_path),
                ));
            }
            if self.connect("postgres").is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::process(
                    "PostgreSQL did not accept connections within 30 s",
                    tail(&log_path),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT): active transactions are rolled back, then it exits.
    pub fn stop(&mut self) -> Result<()> {
        self.signal_and_wait(libc::SIGINT)
    }

    /// SIGKILL: the server dies as if its host had, with no shutdown checkpoint.
    pub fn kill(&mut self) -> Result<()> {
        self.signal_and_wait(libc::SIGKILL)
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child, which we have not yet reaped.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
            }
        }
        if signal == libc::SIGKILL {
            // Children of the postmaster notice its death and exit on their own; wait
            // for the port to close so a restart can bind it.
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.connect("postgres").is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Keeps the directory after drop (for debugging a failed run).
    pub fn keep_files(&mut self) {
        self.remove_on_drop = false;
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.stop();
        if self.remove_on_drop {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// The last lines of a log file, to explain a failure.
fn tail(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = fs::File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("finding a free port", e))
}

/// Removes `dob-pg-<pid>-*` directories whose process is gone.
fn sweep_stale_dirs() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("dob-pg-")) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Certificates for a TLS test server: `ca_file` issued the server's certificate (for
/// IP 127.0.0.1); `other_ca_file` is a CA that did not.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca_file: PathBuf,
    pub other_ca_file: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl TestCerts {
    /// A test CA, a server certificate it issued for IP 127.0.0.1 (and nothing else: the
    /// TLS tests check that a name it does not carry is refused), and an unrelated CA,
    /// made with the `openssl` command in `dir`.
    pub fn make(dir: &Path) -> Result<TestCerts> {
        Self::make_for(dir, "IP:127.0.0.1")
    }

    /// The same, the server certificate naming `subject_alt_names` (openssl's syntax,
    /// e.g. `DNS:localhost`: pgBackRest checks names, not addresses).
    pub fn make_for(dir: &Path, subject_alt_names: &str) -> Result<TestCerts> {
        const EC: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| Error::io("running openssl (install-deps.sh installs it)", e))?;
            if !out.status.success() {
                return Err(Error::process(
                    format!("openssl {}", args.join(" ")),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                ));
            }
            Ok(())
        };
        for ca in ["ca", "other-ca"] {
            let (key, pem, subject) = (
                format!("{ca}.key"),
                format!("{ca}.pem"),
                format!("/CN=dob test {ca}"),
            );
            openssl(
                &[
                    &["req", "-x509", "-nodes", "-days", "2"][..],
                    &EC,
                    &["-keyout", &key, "-out", &pem, "-subj", &subject],
                ]
                .concat(),
            )?;
        }
        fs::write(
            dir.join("server.ext"),
            format!("subjectAltName={subject_alt_names}\n"),
        )
        .map_err(|e| Error::io("writing server.ext", e))?;
        openssl(
            &[
                &["req", "-nodes"][..],
                &EC,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ])?;
        let server_key = dir.join("server.key");
        // PostgreSQL refuses a key others can read, and must be able to read it itself.
        fs::set_permissions(&server_key, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("setting permissions on server.key", e))?;
        give_to_postgres_user(&server_key)?;
        Ok(TestCerts {
            ca_file: dir.join("ca.pem"),
            other_ca_file: dir.join("other-ca.pem"),
            server_cert: dir.join("server.crt"),
            server_key,
        })
    }
}

fn run_to_completion(mut cmd: Command, what: &str) -> Result<()> {
    as_postgres_user(&mut cmd)?;
    let output = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    if !output.status.success() {
        return Err(Error::process(
            format!("{what} failed ({})", output.status),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

/// Spawns `cmd` (as the postgres user when root) so that it receives SIGQUIT
/// (immediate shutdown) if this process dies.
fn spawn_tied_to_process(mut cmd: Command) -> Result<Child> {
    as_postgres_user(&mut cmd)?;
    spawn_dying_with_process(cmd, libc::SIGQUIT)
}

/// Spawns `cmd` so that it receives `signal` if this process dies: test servers
/// (PostgreSQL, the S3 server) never outlive an interrupted test run. The death signal
/// is tied to the thread that forks, so every such child is forked by one thread that
/// lives as long as the process. Credential changes must be registered on `cmd` before
/// (they would clear the death signal if run after it).
pub fn spawn_dying_with_process(mut cmd: Command, signal: libc::c_int) -> Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let parent = std::process::id() as libc::pid_t;
    let program = cmd.get_program().to_string_lossy().into_owned();
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::other(
                    "parent exited before the child started",
                ));
            }
            Ok(())
        });
    }
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pg-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
                // The sender lives in a static and is never dropped: this thread, and
                // so its children's death-signal parent, lives until the process exits.
            })
            .expect("starting the pg-spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply_tx))
        .map_err(|_| Error::other("the pg-spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| Error::other("the pg-spawner thread is gone"))?
        .map_err(|e| Error::io(format!("starting {program}"), e))
}
