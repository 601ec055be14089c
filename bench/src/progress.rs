//! One updating status line on stderr while a run is in progress.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A running status line; `finish` prints the outcome and ends the line.
pub(crate) struct Progress {
    label: String,
    pub(crate) done: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
    quiet: bool,
}

impl Progress {
    /// `total` is how long the run is expected to take (for the `x/y s` display).
    pub(crate) fn start(label: impl Into<String>, total: Duration, quiet: bool) -> Self {
        let label = label.into();
        let done = Arc::new(AtomicU64::new(0));
        let tty = std::io::stderr().is_terminal();
        let ticker = if quiet {
            None
        } else if tty {
            let (l, d) = (label.clone(), done.clone());
            let started = Instant::now();
            Some(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                loop {
                    every.tick().await;
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r\x1b[2K{l}: {:.1}/{:.0} s, {} done",
                        started.elapsed().as_secs_f64(),
                        total.as_secs_f64(),
                        d.load(Ordering::Relaxed)
                    );
                    let _ = err.flush();
                }
            }))
        } else {
            eprintln!("{label} …");
            None
        };
        Self {
            label,
            done,
            ticker,
            quiet,
        }
    }

    pub(crate) fn finish(mut self, summary: &str) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if !self.quiet {
            let clear = if std::io::stderr().is_terminal() {
                "\r\x1b[2K"
            } else {
                ""
            };
            eprintln!("{clear}{}: {summary}", self.label);
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
    }
}
