//! A PostgreSQL cluster of the test's own that takes TLS connections only:
//! `initdb` and `pg_ctl` run as the `postgres` system user (initdb refuses
//! root) on a free port, `ssl=on` with the test CA's server certificate, and
//! `hostssl` lines alone in pg_hba.conf. Stopped (by its own pg_ctl) on drop.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use orderly_testkit::{free_port, missing};

use super::certs::Certs;

pub struct PrivatePostgres {
    pub port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
}

impl PrivatePostgres {
    /// `None` (after `missing`) when PostgreSQL's server programs are not installed.
    pub fn start(certs: &Certs) -> Option<Self> {
        let Some(bin) = server_bin() else {
            return missing(
                "PostgreSQL server (initdb)",
                "no /usr/lib/postgresql/*/bin/initdb",
            );
        };
        let pg = Self {
            port: free_port(),
            bin,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        match pg.init_and_start(certs) {
            Ok(()) => Some(pg),
            Err(why) => panic!("private PostgreSQL did not start: {why}\n{}", pg.log()),
        }
    }

    /// The cluster's `postgres` database with these URL parameters.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn init_and_start(&self, certs: &Certs) -> Result<(), String> {
        let dir = self.dir.path();
        std::fs::copy(certs.server_cert(), dir.join("server.pem")).map_err(|e| e.to_string())?;
        std::fs::copy(certs.server_key(), dir.join("server.key")).map_err(|e| e.to_string())?;
        std::fs::copy(certs.ca(), dir.join("ca.pem")).map_err(|e| e.to_string())?;
        // The server refuses a key others can read.
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        self.give_to_postgres()?;
        self.run(
            "initdb",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        )?;
        std::fs::write(
            self.data().join("pg_hba.conf"),
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\nhostssl all all ::1/128 trust\n",
        )
        .map_err(|e| e.to_string())?;
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{dir}'\n\
             ssl = on\nssl_cert_file = '{dir}/server.pem'\nssl_key_file = '{dir}/server.key'\n\
             ssl_ca_file = '{dir}/ca.pem'\nfsync = off\nmax_connections = 100\n",
            port = self.port,
            dir = dir.display(),
        );
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.data().join("postgresql.conf"))
            .map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut file, conf.as_bytes()).map_err(|e| e.to_string())?;
        self.give_to_postgres()?;
        let log = dir.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// As root, the directory goes to the `postgres` user the server runs as.
    fn give_to_postgres(&self) -> Result<(), String> {
        if !running_as_root() {
            return Ok(());
        }
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(self.dir.path())
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        status
            .success()
            .then_some(())
            .ok_or_else(|| format!("chown -R postgres {}: {status}", self.dir.path().display()))
    }

    /// One of the server's programs, as `postgres` when we are root.
    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program = self.bin.join(program);
        let mut cmd = if running_as_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} {}: {}{}",
                program.display(),
                args.join(" "),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The newest installed server's `bin` directory.
fn server_bin() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse().ok()?;
            let bin = e.path().join("bin");
            Path::new(&bin.join("initdb"))
                .exists()
                .then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}
