//! The embedded broker on the NATS client protocol, over TCP: stock NATS
//! clients (core NATS: pub/sub, queue groups, request/reply, headers) and
//! orderly processes on one host share the broker.
//!
//! - [`parser`]: the incremental tokenizer (after nats-server's `parser.go`).
//! - [`cmd`]: one file per client command (mini-redis `cmd/`).
//! - `session`: a client's read loop, its commands' effects, its subscriptions.
//! - `outbound`: a client's outbound buffer and write task.
//! - `framing`: `MSG`/`HMSG` encoded into that buffer.
//! - `server`: the accept loop, the connection cap, shutdown.
//! - [`auth`]: tokens, users with hashed passwords, subject permissions.
//! - [`tls`]: TLS on the listener (rustls).
//!
//! Messages keep their NATS extras in the broker as headers: the reply
//! subject as [`REPLY_HEADER`], a status (the no-responders 503) as
//! [`STATUS_HEADER`], and the key as [`KEY_HEADER`] on the wire; they are
//! turned back into the `MSG`/`HMSG` fields on the way out.
//!
//! `jetstream` serves the JetStream API subset the NATS adapter uses
//! (streams, durable pull consumers, acks) from the broker's durable streams.
//!
//! Not served: the rest of JetStream (push consumers, KV, object store,
//! direct get, purge/delete), `echo: false`, nkeys and JWT accounts.

pub mod auth;
pub mod cmd;
mod framing;
mod jetstream;
mod outbound;
pub mod parser;
mod server;
mod session;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use auth::{AuthConfigError, Authorization, Permissions, SubjectRules};
pub use server::{BrokerListener, serve};
pub use session::Flow;
pub use tls::TlsConfigError;

/// The message key on the wire (as the NATS adapter sends it).
pub const KEY_HEADER: &str = "Orderly-Key";
/// Inside the broker: the reply subject of a wire publish.
pub const REPLY_HEADER: &str = "Orderly-Reply-To";
/// Inside the broker: the status code of a status message (no responders).
pub const STATUS_HEADER: &str = "Orderly-Status";
/// Inside the broker: the subject a message is shown under when it is routed
/// to another (a JetStream delivery travels to the pull request's inbox).
pub const SUBJECT_HEADER: &str = "Orderly-Subject";

/// The listener's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// `host:port`; port 0 lets the OS choose.
    pub listen: String,
    /// Clients at once; more wait in the accept backlog.
    pub max_connections: usize,
    /// Clients at once from one IP address; more are refused with
    /// `-ERR 'maximum connections exceeded'`, so one host cannot take every
    /// slot of `max_connections`.
    pub max_connections_per_ip: usize,
    /// Subscriptions one client may hold; more are refused with
    /// `-ERR 'Maximum Subscriptions Exceeded'` (the connection stays).
    pub max_subscriptions: usize,
    /// Who may connect and what each client may do; `None`: anyone, everything.
    pub auth: Option<Arc<Authorization>>,
    /// TLS on every connection (see [`tls::server_config`]); `None`: plain TCP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// A client that has not sent CONNECT (and finished its TLS handshake)
    /// this long after connecting is closed (`Authentication Timeout`).
    pub connect_timeout: Duration,
    /// Largest payload a client may publish (announced in INFO).
    pub max_payload: usize,
    /// Longest protocol line a client may send.
    pub max_control_line: usize,
    /// Bytes queued for one client before it counts as a slow consumer.
    pub max_pending: usize,
    /// Bytes queued for all clients together; past it, a client with more
    /// than 1 MiB queued counts as a slow consumer.
    pub max_pending_total: usize,
    /// We ping each client this often ...
    pub ping_interval: Duration,
    /// ... and close it when this many pings are unanswered.
    pub max_pings_out: u32,
    /// The id announced in INFO.
    pub server_id: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:4223".into(),
            // What a small (2-core) box holds with every client near its
            // queued-output limit, not what the file-descriptor table allows.
            max_connections: 1024,
            max_connections_per_ip: 64,
            max_subscriptions: 1024,
            auth: None,
            tls: None,
            connect_timeout: Duration::from_secs(2),
            max_payload: 1024 * 1024,
            max_control_line: parser::MAX_CONTROL_LINE,
            max_pending: 64 * 1024 * 1024,
            max_pending_total: 512 * 1024 * 1024,
            ping_interval: Duration::from_secs(120),
            max_pings_out: 2,
            server_id: format!("ORDERLY{}", uuid::Uuid::new_v4().simple()).to_uppercase(),
        }
    }
}

impl ServerConfig {
    pub(crate) fn info_frame(&self) -> Bytes {
        let info = serde_json::json!({
            "server_id": self.server_id,
            "server_name": "orderly",
            // The protocol level we speak; our own version follows the "+".
            "version": format!("2.10.0+orderly.{}", env!("CARGO_PKG_VERSION")),
            "proto": 1,
            "headers": true,
            "max_payload": self.max_payload,
            "auth_required": self.auth.is_some(),
            "tls_required": self.tls.is_some(),
            "jetstream": true,
        });
        Bytes::from(format!("INFO {info}\r\n"))
    }
}
