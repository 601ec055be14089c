use bytes::{BufMut, BytesMut};

use super::super::session::ClientConn;

/// `PING`: the peer answers `PONG`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping;

impl Ping {
    pub(crate) fn apply(self, conn: &mut ClientConn) {
        conn.process_ping();
    }

    /// Appends the command as it travels.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"PING\r\n");
    }
}
