use thiserror::Error;

/// Errors of a [`crate::Bus`].
#[derive(Debug, Error)]
pub enum BusError {
    /// The subject (first) breaks the grammar or the adapter's rules (why, second).
    #[error("invalid subject {0:?}: {1}")]
    InvalidSubject(String, &'static str),
    /// The payload is over the adapter's limit.
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge {
        /// Bytes of the payload.
        size: usize,
        /// The adapter's limit.
        max: usize,
    },
    /// A durable group needs a stream that captures its subject.
    #[error("no stream captures subject {0:?}")]
    NoStream(String),
    /// `close` was called.
    #[error("the bus is closed")]
    Closed,
    /// The broker cannot be reached or refuses work for now; worth a retry.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The embedded broker could not read or write its data.
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

/// Errors of a [`crate::JobQueue`].
#[derive(Debug, Error)]
pub enum QueueError {
    /// The queue was closed.
    #[error("job queue closed")]
    Closed,
    /// The queue's backend cannot be reached for now; worth a retry.
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
    /// No such job (or its reservation is gone).
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    /// The embedded queue could not read or write its data.
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    /// Anything else, described.
    #[error("{0}")]
    Other(String),
}

impl From<BusError> for QueueError {
    fn from(e: BusError) -> Self {
        match e {
            BusError::Closed => QueueError::Closed,
            BusError::Storage(io) => QueueError::Storage(io),
            BusError::Unavailable(s) => QueueError::Unavailable(s),
            other => QueueError::Other(other.to_string()),
        }
    }
}
