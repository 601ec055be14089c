//! How the embedded broker keeps its streams on disk: when it fsyncs
//! (`ORDERLY_BROKER_SYNC`) and how long it remembers dedup ids such as job ids
//! (`ORDERLY_BROKER_DEDUP_WINDOW_SECONDS`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::ConfigError;
use super::env::{Env, positive};

/// When the embedded broker forces its stream and queue files to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerSync {
    /// `always`: a publish is acknowledged after an fsync (shared by the
    /// publishes that arrive while one runs).
    Always,
    /// `interval:<ms>`: written at once, fsynced at most this often; a power
    /// cut loses at most that much, a process crash nothing.
    Interval(Duration),
}

/// The default: written to the OS at once (a process crash loses nothing),
/// fsynced every 50 ms (a power cut loses at most the last 50 ms).
pub const DEFAULT_BROKER_SYNC: BrokerSync = BrokerSync::Interval(Duration::from_millis(50));

/// The default dedup window: two minutes, as JetStream's. Ids are kept per
/// message published (thousands a second at full rate), and a duplicate that
/// comes later still pays nothing twice: an order becomes PAID once.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(120);

impl FromStr for BrokerSync {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expected = "expected always or interval:<ms>, e.g. interval:50";
        let s = s.trim();
        if s.eq_ignore_ascii_case("always") {
            return Ok(BrokerSync::Always);
        }
        let Some(ms) = s.strip_prefix("interval:") else {
            return Err(expected.into());
        };
        match ms.trim().parse::<u64>() {
            Ok(0) => Err("interval:0 would fsync constantly; use always".into()),
            Ok(ms) => Ok(BrokerSync::Interval(Duration::from_millis(ms))),
            Err(_) => Err(expected.into()),
        }
    }
}

impl fmt::Display for BrokerSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BrokerSync::Always => f.write_str("always"),
            BrokerSync::Interval(d) => write!(f, "interval:{}", d.as_millis()),
        }
    }
}

/// The embedded broker's storage settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerStorage {
    /// `ORDERLY_BROKER_SYNC` (`interval:50`).
    pub sync: BrokerSync,
    /// `ORDERLY_BROKER_DEDUP_WINDOW_SECONDS` (120): how long a job id (any
    /// dedup id) is remembered after it was published; ids of jobs still
    /// queued are kept regardless.
    pub dedup_window: Duration,
}

impl Default for BrokerStorage {
    fn default() -> Self {
        Self {
            sync: DEFAULT_BROKER_SYNC,
            dedup_window: DEFAULT_DEDUP_WINDOW,
        }
    }
}

pub(super) fn broker_storage(env: &Env) -> Result<BrokerStorage, ConfigError> {
    Ok(BrokerStorage {
        sync: env.parse(&["ORDERLY_BROKER_SYNC"], DEFAULT_BROKER_SYNC)?,
        dedup_window: Duration::from_secs(positive(
            env,
            "ORDERLY_BROKER_DEDUP_WINDOW_SECONDS",
            DEFAULT_DEDUP_WINDOW.as_secs(),
        )?),
    })
}
