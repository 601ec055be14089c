use thiserror::Error;

/// Errors of a [`crate::Bus`].
#[derive(Debug, Error)]
pub enum BusError {
    #[error("invalid subject {0:?}: {1}")]
    InvalidSubject(String, &'static str),
    #[error("payload of {size} bytes exceeds the maximum of {max}")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("no stream captures subject {0:?}")]
    NoStream(String),
    #[error("the bus is closed")]
    Closed,
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
    #[error("{0}")]
    Other(String),
}

/// Errors of a [`crate::JobQueue`].
#[derive(Debug, Error)]
pub enum QueueError {
    #[error("job queue closed")]
    Closed,
    #[error("job queue unavailable: {0}")]
    Unavailable(String),
    #[error("unknown job {0:?}")]
    UnknownJob(String),
    #[error("storage error: {0}")]
    Storage(#[from] std::io::Error),
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
