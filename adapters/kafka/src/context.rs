//! librdkafka's logs and errors, sent to tracing.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// A client context that only forwards librdkafka's logs to tracing.
pub(crate) struct LogContext {
    role: &'static str,
}

impl LogContext {
    pub(crate) fn new(role: &'static str) -> Self {
        Self { role }
    }
}

pub(crate) fn log(role: &str, level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", role, fac, "{message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", role, fac, "{message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(target: "librdkafka", role, fac, "{message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", role, fac, "{message}"),
    }
}

pub(crate) fn error(role: &str, error: &KafkaError, reason: &str) {
    // Connection failures repeat while a broker is down; /ready reports them.
    tracing::warn!(target: "librdkafka", role, %error, "{reason}");
}

impl ClientContext for LogContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log(self.role, level, fac, message);
    }

    fn error(&self, e: KafkaError, reason: &str) {
        error(self.role, &e, reason);
    }
}

impl ConsumerContext for LogContext {}
