use bytes::{BufMut, BytesMut};

use super::super::session::ClientConn;

/// `PONG`: the answer to our `PING`; the connection is alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong;

impl Pong {
    pub(crate) fn apply(self, conn: &mut ClientConn) {
        conn.process_pong();
    }

    /// Appends the command as it travels.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_slice(b"PONG\r\n");
    }
}
