use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::super::session::{ClientConn, Flow};
use super::CmdError;

/// `CONNECT {json}`: the client's options. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Connect {
    /// Answer every command with `+OK`.
    pub verbose: bool,
    /// Stricter checks (accepted, not enforced).
    pub pedantic: bool,
    /// Compared with the listener's token, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    /// A user of the listener's authorization …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// … and its password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pass: Option<String>,
    /// The client takes `HMSG`.
    pub headers: bool,
    /// A request nobody subscribes to gets a 503 status message.
    pub no_responders: bool,
    /// The client gets its own messages (always so here).
    pub echo: bool,
    /// The client's name, for logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The protocol level the client speaks.
    pub protocol: u8,
}

impl Default for Connect {
    fn default() -> Self {
        Self {
            verbose: false,
            pedantic: false,
            auth_token: None,
            user: None,
            pass: None,
            headers: false,
            no_responders: false,
            echo: true,
            name: None,
            protocol: 0,
        }
    }
}

impl Connect {
    /// Reads the JSON object after `CONNECT`.
    pub fn parse(args: &[u8]) -> Result<Self, CmdError> {
        serde_json::from_slice(args).map_err(|_| CmdError::Malformed("CONNECT needs a JSON object"))
    }

    pub(crate) async fn apply(self, conn: &mut ClientConn) -> Flow {
        conn.process_connect(self).await
    }

    /// Appends the command as a client sends it.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"CONNECT ");
        // A struct of strings and numbers always serialises.
        out.put_slice(&serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec()));
        out.put_slice(b"\r\n");
    }
}
