//! Logging: readable text when stderr is a terminal, JSON lines otherwise
//! (`LOG_FORMAT=json|text` decides instead), filter from `RUST_LOG`.
//!
//! Lines go to stderr in batches: a line is appended to a shared buffer, and
//! a thread of its own writes the buffer out at most [`FLUSH_EVERY`] after
//! its first line. Under load that is one write system call per batch
//! instead of one on every request's path. Warnings and errors are written
//! at once (with everything before them), so the lines that explain a crash
//! are out before it; a SIGKILL can lose at most the last [`FLUSH_EVERY`] of
//! info lines. Dropping the [`LogGuard`] writes out the rest.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// The variables logging reads (listed with the configuration's in
/// [`crate::config::VARIABLES`]).
pub const ENV_NAMES: &[&str] = &[EnvFilter::DEFAULT_ENV, LOG_FORMAT];
const LOG_FORMAT: &str = "LOG_FORMAT";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line, for log collectors.
    Json,
    /// Aligned, readable lines, for a person at a terminal.
    Text,
}

/// The format `LOG_FORMAT` names; unset or empty, text for a terminal and
/// JSON for anything else (a pipe, a file, a container's log driver). `Err`
/// carries the default and what is wrong with the value.
pub fn log_format(
    value: Option<&str>,
    stderr_is_terminal: bool,
) -> Result<LogFormat, (LogFormat, String)> {
    let default = if stderr_is_terminal {
        LogFormat::Text
    } else {
        LogFormat::Json
    };
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) if v.eq_ignore_ascii_case("json") => Ok(LogFormat::Json),
        Some(v) if v.eq_ignore_ascii_case("text") => Ok(LogFormat::Text),
        Some(v) => Err((
            default,
            format!("{LOG_FORMAT}={v:?} is not valid: expected json or text"),
        )),
    }
}

/// Longest time an info line waits in the buffer.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// Beyond this many buffered bytes, the logging thread writes them itself.
const MOST_BUFFERED: usize = 1 << 20;

/// Writes out every buffered line when dropped; keep it until the process exits.
#[must_use = "keep it until the process exits, so the last lines are written"]
pub struct LogGuard {
    batches: Batches<std::io::Stderr>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.batches.flush();
    }
}

/// Install the global subscriber; `default_filter` applies when `RUST_LOG` is unset.
pub fn init(default_filter: &str) -> LogGuard {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let value = std::env::var(LOG_FORMAT).ok();
    let terminal = std::io::stderr().is_terminal();
    let (format, problem) = match log_format(value.as_deref(), terminal) {
        Ok(format) => (format, None),
        Err((format, problem)) => (format, Some(problem)),
    };
    let batches = Batches::start(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(batches.clone())
        // Colour codes only where a terminal turns them into colour.
        .with_ansi(terminal);
    // A second init (tests in one process) is harmless.
    let _ = if format == LogFormat::Text {
        builder.try_init()
    } else {
        // The span list already holds the current span's fields: printing the
        // current span as well doubled every line's spans.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    };
    // Logging must start to say what is wrong with its own setting.
    if let Some(problem) = problem {
        tracing::warn!("{problem}; logging as {format:?}");
    }
    LogGuard { batches }
}

/// A writer shared by every logging thread, written out in batches.
struct Batches<W> {
    shared: Arc<Shared<W>>,
}

impl<W> Clone for Batches<W> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<W> {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// Signalled when `pending` stops being empty.
    not_empty: Condvar,
    /// Held while writing, so batches reach `out` in the order they were taken.
    out: Mutex<W>,
}

impl<W: Write + Send + 'static> Batches<W> {
    fn start(out: W) -> Self {
        let batches = Self {
            shared: Arc::new(Shared {
                pending: Mutex::new(Vec::with_capacity(64 * 1024)),
                not_empty: Condvar::new(),
                out: Mutex::new(out),
            }),
        };
        let writer = batches.clone();
        // Without the thread every line would wait for a warning or the exit;
        // say so where it can still be read.
        if let Err(e) = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.write_out_forever())
        {
            let _ = writeln!(
                std::io::stderr(),
                "cannot start the log writer thread ({e}); info lines are written as they come"
            );
        }
        batches
    }

    fn write_out_forever(&self) {
        loop {
            {
                let pending = self.lock_pending();
                let _pending = self
                    .shared
                    .not_empty
                    .wait_while(pending, |p| p.is_empty())
                    .unwrap_or_else(PoisonError::into_inner);
            }
            // Let the batch fill before writing it.
            std::thread::sleep(FLUSH_EVERY);
            self.flush();
        }
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.shared
            .pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Append one formatted line (tracing writes each event in one call).
    fn append(&self, line: &[u8], urgent: bool) {
        let (was_empty, full) = {
            let mut pending = self.lock_pending();
            let was_empty = pending.is_empty();
            pending.extend_from_slice(line);
            (was_empty, pending.len() >= MOST_BUFFERED)
        };
        if urgent || full {
            self.flush();
        } else if was_empty {
            self.shared.not_empty.notify_one();
        }
    }

    /// Write out everything appended so far.
    fn flush(&self) {
        let mut out = self
            .shared
            .out
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let batch = std::mem::take(&mut *self.lock_pending());
        if batch.is_empty() {
            return;
        }
        // Nowhere to report a failed write to stderr.
        let _ = out.write_all(&batch);
        let _ = out.flush();
        // Hand the allocation back for the next batch when nothing came meanwhile.
        let mut pending = self.lock_pending();
        if pending.is_empty() {
            let mut reused = batch;
            reused.clear();
            *pending = reused;
        }
    }
}

/// What the formatter writes one event through.
struct LineWriter<W> {
    batches: Batches<W>,
    urgent: bool,
}

impl<W: Write + Send + 'static> Write for LineWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.batches.append(buf, self.urgent);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a, W: Write + Send + 'static> MakeWriter<'a> for Batches<W> {
    type Writer = LineWriter<W>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            batches: self.clone(),
            urgent: false,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        LineWriter {
            batches: self.clone(),
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn line(batches: &Batches<Captured>, level: Level, text: &str) {
        let mut writer = LineWriter {
            batches: batches.clone(),
            urgent: level <= Level::WARN,
        };
        writer.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn log_format_defaults_to_text_on_a_terminal_and_json_elsewhere() {
        assert_eq!(log_format(None, true), Ok(LogFormat::Text));
        assert_eq!(log_format(None, false), Ok(LogFormat::Json));
        assert_eq!(log_format(Some(""), true), Ok(LogFormat::Text));
    }

    #[test]
    fn log_format_from_the_environment_wins_over_the_terminal_guess() {
        assert_eq!(log_format(Some("json"), true), Ok(LogFormat::Json));
        assert_eq!(log_format(Some("TEXT"), false), Ok(LogFormat::Text));
        let (fallback, why) = log_format(Some("xml"), false).unwrap_err();
        assert_eq!(fallback, LogFormat::Json);
        assert!(why.contains("LOG_FORMAT=\"xml\""), "{why}");
    }

    #[test]
    fn info_lines_are_written_by_the_thread_within_the_flush_interval() {
        let out = Captured::default();
        let batches = Batches::start(out.clone());
        line(&batches, Level::INFO, "one\n");
        line(&batches, Level::INFO, "two\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while out.text().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(out.text(), "one\ntwo\n");
    }

    #[test]
    fn a_warning_is_written_at_once_after_the_lines_before_it() {
        let out = Captured::default();
        let batches = Batches::start(out.clone());
        line(&batches, Level::INFO, "before\n");
        line(&batches, Level::WARN, "warning\n");
        // No waiting: the warning's write took the info line with it.
        assert_eq!(out.text(), "before\nwarning\n");
        line(&batches, Level::ERROR, "error\n");
        assert_eq!(out.text(), "before\nwarning\nerror\n");
    }

    #[test]
    fn dropping_the_guard_writes_out_what_is_buffered() {
        let out = Captured::default();
        let batches = Batches::start(out.clone());
        for i in 0..1000 {
            line(&batches, Level::INFO, &format!("line {i}\n"));
        }
        batches.flush();
        let text = out.text();
        assert_eq!(text.lines().count(), 1000);
        assert!(
            text.lines()
                .enumerate()
                .all(|(i, l)| l == format!("line {i}"))
        );
    }

    #[test]
    fn lines_from_many_threads_stay_whole() {
        let out = Captured::default();
        let batches = Batches::start(out.clone());
        std::thread::scope(|s| {
            for t in 0..4 {
                let batches = batches.clone();
                s.spawn(move || {
                    for i in 0..2000 {
                        let level = if i % 97 == 0 {
                            Level::WARN
                        } else {
                            Level::INFO
                        };
                        line(&batches, level, &format!("thread {t} line {i}\n"));
                    }
                });
            }
        });
        batches.flush();
        let text = out.text();
        assert_eq!(text.lines().count(), 8000);
        for t in 0..4 {
            let own: Vec<usize> = text
                .lines()
                .filter_map(|l| l.strip_prefix(&format!("thread {t} line ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(
                own,
                (0..2000).collect::<Vec<_>>(),
                "thread {t}'s lines in order"
            );
        }
    }
}
