//! A `redis-server` of a test's own, for tests that stop and start Redis
//! (never the machine's shared one).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` of the test's own that persists every write (AOF,
/// `appendfsync always`), so a SIGKILL and a start on the same directory keep
/// everything that was acknowledged. Killed (by its PID) on drop.
pub struct DurableRedis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl DurableRedis {
    /// `None` when `redis-server` cannot run (after the testkit's missing rule).
    pub fn start() -> Option<Self> {
        let mut r = Self {
            port: crate::free_port(),
            dir: tempfile::tempdir().expect("a temp dir for redis-server"),
            child: None,
        };
        match r.restart() {
            Ok(()) => Some(r),
            Err(e) => crate::missing("redis-server", e),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let mut command = Command::new("redis-server");
        command.arg("--dir").arg(self.dir.path()).args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ]);
        self.child = Some(spawn_answering(
            command,
            self.port,
            Duration::from_secs(10),
        )?);
        Ok(())
    }

    /// SIGKILL: no shutdown save; only the AOF keeps the data.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for DurableRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `command` (a `redis-server` with its settings) on `port` of
/// 127.0.0.1 and waits until it answers PING; killed again when it does not
/// within `patience`.
pub fn spawn_answering(
    mut command: Command,
    port: u16,
    patience: Duration,
) -> Result<Child, String> {
    let mut child = command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))?;
    let url = format!("redis://127.0.0.1:{port}");
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + patience;
    loop {
        if let Ok(mut conn) = client.get_connection()
            && redis::cmd("PING").query::<String>(&mut conn).is_ok()
        {
            return Ok(child);
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("redis-server exited at start: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("redis-server on port {port} never answered"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
