//! The API's workloads against one running implementation.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use bytes::Bytes;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, StatusCode};

use super::load_measurement;
use crate::api::{self, User};
use crate::cpu;
use crate::http::{self, Client, LoadSpec, RequestTemplate, Target};
use crate::ids::{ApiTarget, MeasurementId, Workload};
use crate::progress::Progress;
use crate::report::{Measurement, Report};
use crate::sections::{Config, summary};

/// One implementation of the API under the workloads.
pub(super) struct ApiRun<'a> {
    /// Which implementation: names its measurements.
    pub(super) target: ApiTarget,
    pub(super) auth: &'a Target,
    pub(super) orders: &'a Target,
    /// The server's process, to read its CPU time around each run.
    pub(super) pid: Option<u32>,
    /// Only these workloads; `None`: all of them.
    pub(super) only: Option<&'a [Workload]>,
}

impl ApiRun<'_> {
    fn includes(&self, w: Workload) -> bool {
        self.only.is_none_or(|only| only.contains(&w))
    }

    /// Runs the workloads at each connection count of `cfg`.
    pub(super) async fn run(&self, cfg: &Config, r: &mut Report) {
        let (a, b, ids) = match self.setup().await {
            Ok(x) => x,
            Err(e) => {
                skip(
                    cfg,
                    r,
                    self.target,
                    &format!("setup failed: {e:#}"),
                    self.only,
                );
                return;
            }
        };
        for (w, template) in self.templates(&a, &b, &ids) {
            if !self.includes(w) {
                continue;
            }
            let server = if w == Workload::Token {
                self.auth
            } else {
                self.orders
            };
            let template = Arc::new(template);
            for &c in &cfg.connections {
                let m = self.measure(cfg, w, server, template.clone(), c).await;
                r.measurements.push(m);
            }
        }
    }

    /// Two users, and 10 orders of the first in the cache: the measured
    /// GETs are cache hits.
    async fn setup(&self) -> anyhow::Result<(User, User, Vec<String>)> {
        let a = api::new_user(self.auth).await.context("user A")?;
        let b = api::new_user(self.auth).await.context("user B")?;
        let mut c = Client::new(self.orders.clone());
        let mut ids = Vec::new();
        for _ in 0..10 {
            ids.push(api::create_order(&mut c, &a.token).await?);
        }
        for id in &ids {
            api::order_status(&mut c, &a.token, id).await?;
        }
        Ok((a, b, ids))
    }

    fn templates(&self, a: &User, b: &User, ids: &[String]) -> [(Workload, RequestTemplate); 4] {
        let bearer =
            |t: RequestTemplate, tok: &str| t.bearer(tok).expect("a JWT is a valid header");
        let mut get = RequestTemplate::get("");
        get.paths = ids.iter().map(|id| format!("/orders/{id}/")).collect();
        let list = RequestTemplate::get(format!("/orders/user/{}/", a.user_id));
        let create = RequestTemplate {
            method: Method::POST,
            paths: vec!["/orders/".into()],
            headers: vec![(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
            body: Bytes::from(api::order_body().to_string()),
            expect: StatusCode::OK,
        };
        let token = RequestTemplate {
            method: Method::POST,
            paths: vec!["/auth/token/".into()],
            headers: vec![(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )],
            body: Bytes::from(api::token_form(&a.email)),
            expect: StatusCode::OK,
        };
        [
            (Workload::Get, bearer(get, &a.token)),
            (Workload::List, bearer(list, &a.token)),
            (Workload::Create, bearer(create, &b.token)),
            (Workload::Token, token),
        ]
    }

    async fn measure(
        &self,
        cfg: &Config,
        w: Workload,
        server: &Target,
        template: Arc<RequestTemplate>,
        c: usize,
    ) -> Measurement {
        let target_name = self.target.name();
        let label = format!("http {} {target_name} c={c}", w.key());
        let p = Progress::start(&label, cfg.run_time(), cfg.quiet);
        let before = self.pid.and_then(cpu::process);
        let spec = LoadSpec {
            connections: c,
            ..cfg.load()
        };
        let res = http::run_load(server, template, spec, p.done.clone()).await;
        let after = self.pid.and_then(cpu::process);
        let id = MeasurementId::Http {
            workload: w,
            target: self.target,
            connections: c,
        };
        let mut m = load_measurement(id, w.name(), target_name, c, &res);
        if let (Some(b0), Some(b1)) = (before, after) {
            let total = p.done.load(Ordering::Relaxed).max(1) as f64;
            m.extra.insert(
                "server_cpu_us_per_req".into(),
                (b1 - b0).as_secs_f64() * 1e6 / total,
            );
        }
        p.finish(&summary(&m));
        m
    }
}

/// Skipped rows for the workloads (all, or those in `only`) of one target.
pub(super) fn skip(
    cfg: &Config,
    r: &mut Report,
    target: ApiTarget,
    reason: &str,
    only: Option<&[Workload]>,
) {
    for w in Workload::ALL {
        if only.is_some_and(|only| !only.contains(&w)) {
            continue;
        }
        for &c in &cfg.connections {
            let id = MeasurementId::Http {
                workload: w,
                target,
                connections: c,
            };
            r.measurements.push(
                Measurement::new(id, w.name(), target.name())
                    .with_connections(c)
                    .skipped(reason),
            );
        }
    }
}
