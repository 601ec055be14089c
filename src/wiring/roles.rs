//! What each long-running role starts in its process: one row per role.

/// A role `orderly` runs until Ctrl-C.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Auth,
    Orders,
    Consumer,
    Worker,
    Broker,
}

/// The parts one process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Starts {
    /// The auth HTTP API.
    pub auth: bool,
    /// The orders HTTP API with its outbox relay.
    pub orders: bool,
    /// `new_order` events into `process_order` jobs.
    pub consumer: bool,
    /// `process_order` jobs, the queue's maintenance, the reconciler and the
    /// queue depth gauge.
    pub worker: bool,
    /// The embedded broker served to NATS clients, and nothing else.
    pub broker: bool,
}

const NOTHING: Starts = Starts {
    auth: false,
    orders: false,
    consumer: false,
    worker: false,
    broker: false,
};

impl Role {
    /// The table of roles.
    pub const fn starts(self) -> Starts {
        match self {
            Role::All => Starts {
                auth: true,
                orders: true,
                consumer: true,
                worker: true,
                broker: false,
            },
            Role::Auth => Starts {
                auth: true,
                ..NOTHING
            },
            Role::Orders => Starts {
                orders: true,
                ..NOTHING
            },
            Role::Consumer => Starts {
                consumer: true,
                ..NOTHING
            },
            Role::Worker => Starts {
                worker: true,
                ..NOTHING
            },
            Role::Broker => Starts {
                broker: true,
                ..NOTHING
            },
        }
    }
}

impl Starts {
    /// The bus and the job queue: everything but auth talks to them.
    pub fn messaging(&self) -> bool {
        self.orders || self.consumer || self.worker
    }

    /// The orders service's parts: the API, and the worker, which changes orders.
    pub fn order_service(&self) -> bool {
        self.orders || self.worker
    }

    /// The process takes jobs from the queue, so the queue is its concern too.
    pub fn runs_jobs(&self) -> bool {
        self.consumer || self.worker
    }

    /// No HTTP API to carry `/health`, `/ready` and `/metrics`: they go on
    /// the ops listener (`ORDERLY_OPS_BIND`) instead.
    pub fn needs_ops_listener(&self) -> bool {
        self.runs_jobs() && !self.auth && !self.orders
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_roles_without_an_api_get_an_ops_listener() {
        let with_ops: Vec<Role> = [
            Role::All,
            Role::Auth,
            Role::Orders,
            Role::Consumer,
            Role::Worker,
            Role::Broker,
        ]
        .into_iter()
        .filter(|r| r.starts().needs_ops_listener())
        .collect();
        assert_eq!(with_ops, [Role::Consumer, Role::Worker]);
    }

    #[test]
    fn auth_alone_opens_no_bus_and_the_worker_builds_the_order_service() {
        assert!(!Role::Auth.starts().messaging());
        assert!(Role::Worker.starts().order_service());
        assert!(!Role::Consumer.starts().order_service());
    }
}
