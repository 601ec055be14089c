use std::collections::BTreeSet;
use std::time::Duration;

use hcl::{Block, Body, Expression};

use crate::support::{Ctx, assert_reported, contract_port, mutate, read, root};

/// How long an HTTP server drains in-flight requests after SIGTERM.
const DRAIN: Duration = orderly_http::server::DRAIN_BOUND;
/// The worker's default stop grace (`WORKER_STOP_GRACE`): how long it lets
/// jobs in hand finish before handing the rest back to the queue.
const WORKER_STOP_GRACE: Duration = Duration::from_secs(15);
/// Time between the end of the drain and the kill, for the exit itself.
const EXIT_MARGIN: Duration = Duration::from_secs(5);
/// Nomad clients refuse a longer kill_timeout unless configured otherwise
/// (`max_kill_timeout`, default 30 s).
const MAX_KILL_TIMEOUT: Duration = Duration::from_secs(30);
/// auth's memory besides password hashing (MiB).
const AUTH_BASELINE_MIB: u64 = 128;

/// A Nomad duration (`25s`, `1m`, `500ms`).
fn duration(text: &str) -> Option<Duration> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    let n: u64 = digits.parse().ok()?;
    match &text[digits.len()..] {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n * 60)),
        _ => None,
    }
}

/// The roles that serve `/health`, `/ready` and `/metrics` on the ops listener.
fn ops_role(role: &str) -> bool {
    matches!(role, "consumer" | "worker")
}

/// An expression as the text it stands for: strings and templates as written,
/// anything else (`var.image`) in HCL syntax.
fn text(expr: &Expression) -> String {
    match expr {
        Expression::String(s) => s.clone(),
        Expression::TemplateExpr(t) => t.to_string(),
        Expression::Number(n) => n.to_string(),
        Expression::Bool(b) => b.to_string(),
        other => hcl::format::to_string(other).unwrap_or_default(),
    }
}

fn attr(body: &Body, key: &str) -> Option<String> {
    body.attributes()
        .find(|a| a.key() == key)
        .map(|a| text(a.expr()))
}

fn attr_list(body: &Body, key: &str) -> Vec<String> {
    match body.attributes().find(|a| a.key() == key).map(|a| a.expr()) {
        Some(Expression::Array(items)) => items.iter().map(text).collect(),
        _ => Vec::new(),
    }
}

fn blocks<'a>(body: &'a Body, ident: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
    body.blocks().filter(move |b| b.identifier() == ident)
}

fn label(b: &Block) -> String {
    b.labels()
        .first()
        .map(|l| l.as_str().to_string())
        .unwrap_or_default()
}

/// The job files: every deploy/nomad/*.hcl except ACL policies (*.policy.hcl).
pub fn job_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("deploy/nomad"))
        .expect("deploy/nomad")
        .filter_map(|e| e.ok())
        .map(|e| format!("deploy/nomad/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".hcl") && !f.ends_with(".policy.hcl"))
        .collect();
    files.sort();
    files
}

/// The keys read from the shared Nomad variable (`{{ .key }}` inside nomadVar).
pub fn variable_keys(src: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for chunk in src.split("nomadVar \"nomad/jobs/orderly\"").skip(1) {
        let scope = chunk.split("{{ end }}").next().unwrap_or_default();
        for part in scope.split("{{ .").skip(1) {
            let key: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            keys.insert(key);
        }
    }
    keys
}

/// The roles run (`config.args[0]` of tasks on `var.image`) in one job file.
pub struct Job {
    pub name: String,
    pub roles: Vec<String>,
}

/// Everything wrong with one job file; `image` is the compose file's image.
pub fn check(file: &str, src: &str, ctx: &Ctx, image: &str) -> (Vec<String>, Option<Job>) {
    let mut f = Vec::new();
    let body = match hcl::parse(src) {
        Ok(b) => b,
        Err(e) => return (vec![format!("{file}: not HCL: {e}")], None),
    };
    for chunk in src.split("nomadVar \"").skip(1) {
        let path = chunk.split('"').next().unwrap_or_default();
        if path != "nomad/jobs/orderly" {
            f.push(format!(
                "{file}: reads the variable {path}, not nomad/jobs/orderly"
            ));
        }
    }
    let image_var = blocks(&body, "variable").find(|v| label(v) == "image");
    let jobs: Vec<&Block> = blocks(&body, "job").collect();
    let [job] = jobs.as_slice() else {
        f.push(format!(
            "{file}: expected one job block, found {}",
            jobs.len()
        ));
        return (f, None);
    };
    let job_name = label(job);
    let mut roles = Vec::new();
    let mut registers_services = false;
    let update = blocks(job.body(), "update").next();

    for group in blocks(job.body(), "group") {
        let g = format!("{file}: group {}", label(group));
        if blocks(group.body(), "restart").next().is_none() {
            f.push(format!("{g}: no restart policy"));
        }
        let ports: Vec<(String, Option<String>)> = blocks(group.body(), "network")
            .flat_map(|n| blocks(n.body(), "port").map(|p| (label(p), attr(p.body(), "to"))))
            .collect();
        let services: Vec<&Block> = blocks(group.body(), "service").collect();
        registers_services |= !services.is_empty();
        for s in &services {
            let checks: Vec<&Block> = blocks(s.body(), "check").collect();
            if checks.is_empty() {
                f.push(format!(
                    "{g}: service {} has no check",
                    attr(s.body(), "name").unwrap_or_default()
                ));
            }
            if let Some(p) = attr(s.body(), "port")
                && !ports.iter().any(|(l, _)| *l == p)
            {
                f.push(format!(
                    "{g}: service port {p} is not in the group's network"
                ));
            }
        }
        let http_paths: BTreeSet<String> = services
            .iter()
            .flat_map(|s| blocks(s.body(), "check"))
            .filter(|c| attr(c.body(), "type").as_deref() == Some("http"))
            .filter_map(|c| attr(c.body(), "path"))
            .collect();

        for task in blocks(group.body(), "task") {
            let t = format!("{g} task {}", label(task));
            let Some(config) = blocks(task.body(), "config").next() else {
                f.push(format!("{t}: no config"));
                continue;
            };
            let resources = blocks(task.body(), "resources").next();
            match resources {
                Some(r)
                    if (attr(r.body(), "cpu").is_some() || attr(r.body(), "cores").is_some())
                        && attr(r.body(), "memory").is_some() => {}
                _ => f.push(format!("{t}: no cpu (or cores) and memory resources")),
            }
            let task_image = attr(config.body(), "image").unwrap_or_default();
            if task_image != "var.image" {
                continue; // infrastructure (postgres, redis, kafka)
            }
            match image_var.and_then(|v| attr(v.body(), "default")) {
                Some(d) if d == image => {}
                other => f.push(format!(
                    "{file}: variable image defaults to {other:?}, compose uses {image}"
                )),
            }
            let role = attr_list(config.body(), "args")
                .into_iter()
                .next()
                .unwrap_or_default();
            if !ctx.subcommands.contains(&role) {
                f.push(format!("{t}: `{role}` is not a subcommand of orderly"));
            }
            roles.push(role.clone());
            f.extend(stop_findings(&t, task.body(), &role, !services.is_empty()));
            if role == "auth" {
                f.extend(auth_memory_findings(&t, resources.map(Block::body)));
            }
            let untagged = services
                .iter()
                .filter(|s| !attr_list(s.body(), "tags").iter().any(|t| t == "metrics"))
                .filter_map(|s| attr(s.body(), "name"));
            for name in untagged {
                f.push(format!(
                    "{t}: service {name} lacks the tag `metrics` Prometheus scrapes by"
                ));
            }

            let mut env_names: Vec<(String, String)> = blocks(task.body(), "env")
                .flat_map(|e| {
                    e.body()
                        .attributes()
                        .map(|a| (a.key().to_string(), text(a.expr())))
                })
                .collect();
            for tpl in blocks(task.body(), "template") {
                let data = attr(tpl.body(), "data").unwrap_or_default();
                if attr(tpl.body(), "env").as_deref() == Some("true") {
                    for line in data.lines().map(str::trim) {
                        if let Some((k, v)) = line.split_once('=')
                            && !line.starts_with("{{")
                        {
                            env_names.push((k.to_string(), v.to_string()));
                        }
                    }
                } else if attr(tpl.body(), "uid").as_deref() != Some("10001") {
                    f.push(format!(
                        "{t}: a file template must belong to the image's user (uid = 10001)"
                    ));
                }
            }
            for (k, _) in &env_names {
                if !ctx.env_names.contains(k) {
                    f.push(format!("{t}: env {k} is not a variable the binary reads"));
                }
            }
            if let Some(port) = contract_port(&role) {
                let bind = if role == "auth" {
                    "AUTH_BIND"
                } else {
                    "ORDERS_BIND"
                };
                if !env_names
                    .iter()
                    .any(|(k, v)| k == bind && *v == format!("0.0.0.0:{port}"))
                {
                    f.push(format!("{t}: {bind} should be 0.0.0.0:{port} (contract)"));
                }
                let mapped: Vec<&(String, Option<String>)> = ports
                    .iter()
                    .filter(|(_, to)| to.as_deref() == Some(&port.to_string()))
                    .collect();
                if mapped.is_empty() {
                    f.push(format!("{t}: no network port maps to {port} (contract)"));
                }
                if !attr_list(config.body(), "ports")
                    .iter()
                    .any(|p| mapped.iter().any(|(l, _)| l == p))
                {
                    f.push(format!(
                        "{t}: the docker config does not publish the {port} port"
                    ));
                }
                for path in ["/health", "/ready"] {
                    if !http_paths.contains(path) {
                        f.push(format!("{t}: no HTTP check on {path}"));
                    }
                }
            }
            if ops_role(&role) {
                let bind = env_names
                    .iter()
                    .find(|(k, _)| k == "ORDERLY_OPS_BIND")
                    .map(|(_, v)| v.clone());
                let port = bind.as_deref().and_then(|b| b.strip_prefix("0.0.0.0:"));
                let mapped: Vec<&(String, Option<String>)> = ports
                    .iter()
                    .filter(|(_, to)| port.is_some() && to.as_deref() == port)
                    .collect();
                if port.is_none() {
                    f.push(format!(
                        "{t}: ORDERLY_OPS_BIND should be 0.0.0.0:PORT (its /metrics is scraped)"
                    ));
                } else if mapped.is_empty() {
                    f.push(format!(
                        "{t}: no network port maps to ORDERLY_OPS_BIND's {}",
                        port.unwrap_or_default()
                    ));
                } else if !attr_list(config.body(), "ports")
                    .iter()
                    .any(|p| mapped.iter().any(|(l, _)| l == p))
                {
                    f.push(format!(
                        "{t}: the docker config does not publish the ops port"
                    ));
                }
                for path in ["/health", "/ready"] {
                    if !http_paths.contains(path) {
                        f.push(format!("{t}: no HTTP check on {path} of the ops listener"));
                    }
                }
            }
        }
    }
    if !roles.is_empty() {
        match update {
            None => f.push(format!("{file}: no update block")),
            Some(u) => {
                let b = u.body();
                if attr(b, "canary")
                    .and_then(|c| c.parse::<u32>().ok())
                    .unwrap_or(0)
                    < 1
                {
                    f.push(format!("{file}: update without a canary"));
                }
                if attr(b, "auto_revert").as_deref() != Some("true") {
                    f.push(format!("{file}: update without auto_revert"));
                }
                let want = if registers_services {
                    "checks"
                } else {
                    "task_states"
                };
                if attr(b, "health_check").as_deref() != Some(want) {
                    f.push(format!("{file}: update should judge health by {want}"));
                }
            }
        }
    }
    (
        f,
        Some(Job {
            name: job_name,
            roles,
        }),
    )
}

/// A task's stop: the kill must come after the drain (and the worker's stop
/// grace), within what a Nomad client allows; a task behind a service is
/// deregistered before it is signalled.
fn stop_findings(t: &str, task: &Body, role: &str, has_service: bool) -> Vec<String> {
    let mut f = Vec::new();
    let mut work = DRAIN;
    if role == "worker" {
        work = work.max(WORKER_STOP_GRACE);
    }
    let least = work + EXIT_MARGIN;
    match attr(task, "kill_timeout").as_deref().map(duration) {
        None => f.push(format!(
            "{t}: no kill_timeout (Nomad's default 5 s is shorter than the {DRAIN:?} drain)"
        )),
        Some(None) => f.push(format!("{t}: kill_timeout is not a duration")),
        Some(Some(d)) if d < least => f.push(format!(
            "{t}: kill_timeout {d:?} is shorter than the {work:?} stop plus {EXIT_MARGIN:?}"
        )),
        Some(Some(d)) if d > MAX_KILL_TIMEOUT => f.push(format!(
            "{t}: kill_timeout {d:?} is longer than a Nomad client's default max_kill_timeout {MAX_KILL_TIMEOUT:?}"
        )),
        Some(Some(_)) => {}
    }
    if has_service {
        match attr(task, "shutdown_delay").as_deref().map(duration) {
            Some(Some(d)) if !d.is_zero() => {}
            _ => f.push(format!(
                "{t}: no shutdown_delay (deregister before the signal, or requests still arrive)"
            )),
        }
    }
    f
}

/// auth hashes one password per core it may run on, each hash holding
/// `MEMORY_KIB`: its cores must be reserved (`cores`, not `cpu`, whose
/// share leaves every host core visible) and its memory must hold a hash on
/// each of them besides the baseline.
fn auth_memory_findings(t: &str, resources: Option<&Body>) -> Vec<String> {
    let Some(r) = resources else {
        return Vec::new();
    };
    let Some(cores) = attr(r, "cores").and_then(|c| c.parse::<u64>().ok()) else {
        return vec![format!(
            "{t}: reserve `cores`: with `cpu` auth runs a 19 MiB hash on every core of the host at once"
        )];
    };
    let hash_mib = u64::from(orderly_auth::password::MEMORY_KIB).div_ceil(1024);
    let need = AUTH_BASELINE_MIB + cores * hash_mib;
    match attr(r, "memory").and_then(|m| m.parse::<u64>().ok()) {
        Some(m) if m >= need => Vec::new(),
        m => vec![format!(
            "{t}: memory {m:?} MiB is less than {AUTH_BASELINE_MIB} + {cores} cores x {hash_mib} MiB = {need} MiB"
        )],
    }
}

/// Every job file checked, plus what the set of them must cover.
pub fn check_all(files: &[(String, String)], ctx: &Ctx, image: &str) -> Vec<String> {
    let mut f = Vec::new();
    let mut roles = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (file, src) in files {
        let (found, job) = check(file, src, ctx, image);
        f.extend(found);
        if let Some(job) = job {
            if !names.insert(job.name.clone()) {
                f.push(format!("{file}: job name {} used twice", job.name));
            }
            roles.extend(job.roles);
        }
    }
    for r in ["auth", "orders", "consumer", "worker"] {
        if !roles.contains(r) {
            f.push(format!("no Nomad job runs `orderly {r}`"));
        }
    }
    f
}

fn real_files() -> Vec<(String, String)> {
    job_files()
        .into_iter()
        .map(|f| (f.clone(), read(&f)))
        .collect()
}

fn with(files: &[(String, String)], file: &str, from: &str, to: &str) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(f, s)| {
            (
                f.clone(),
                if f == file {
                    mutate(s, from, to)
                } else {
                    s.clone()
                },
            )
        })
        .collect()
}

const IMAGE: &str = crate::compose::ORDERLY_IMAGE;

#[test]
fn the_nomad_jobs_pass_every_check() {
    let files = real_files();
    assert!(
        files.len() >= 5,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    let findings = check_all(&files, &Ctx::new(), IMAGE);
    assert!(findings.is_empty(), "{findings:#?}");
    let policy = read("deploy/nomad/secrets.policy.hcl");
    let body = hcl::parse(&policy).expect("the ACL policy is HCL");
    assert!(
        policy.contains("path \"nomad/jobs/orderly\"") && blocks(&body, "namespace").count() == 1
    );
}

#[test]
fn the_nomad_health_check_checks_can_fail() {
    let ctx = Ctx::new();
    let files = real_files();
    let bad = with(
        &files,
        "deploy/nomad/orders.nomad.hcl",
        "        path     = \"/ready\"",
        "        path     = \"/readyz\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["orders", "no HTTP check on /ready"],
    );
    let bad = with(
        &files,
        "deploy/nomad/infra.nomad.hcl",
        "      check {\n        type     = \"tcp\"\n        interval = \"10s\"\n        timeout  = \"2s\"\n      }\n",
        "",
    );
    assert_reported(&check_all(&bad, &ctx, IMAGE), &["infra", "has no check"]);
    let bad = with(
        &files,
        "deploy/nomad/worker.nomad.hcl",
        "    auto_revert       = true\n",
        "",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["worker", "without auto_revert"],
    );
}

#[test]
fn the_nomad_port_checks_can_fail() {
    let ctx = Ctx::new();
    let files = real_files();
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "        to = 8001",
        "        to = 8011",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["auth", "no network port maps to 8001"],
    );
    let bad = with(
        &files,
        "deploy/nomad/orders.nomad.hcl",
        "ORDERS_BIND            = \"0.0.0.0:8000\"",
        "ORDERS_BIND            = \"0.0.0.0:9000\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["ORDERS_BIND should be 0.0.0.0:8000"],
    );
}

#[test]
fn the_nomad_env_name_and_role_checks_can_fail() {
    let ctx = Ctx::new();
    let files = real_files();
    let bad = with(
        &files,
        "deploy/nomad/worker.nomad.hcl",
        "        ORDERS_DATABASE_URL={{",
        "        ORDER_DATABASE_URL={{",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["env ORDER_DATABASE_URL is not a variable"],
    );
    let bad = with(
        &files,
        "deploy/nomad/consumer.nomad.hcl",
        "        JOB_QUEUE = \"redis\"",
        "        JOBQUEUE = \"redis\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["env JOBQUEUE is not a variable"],
    );
    let bad = with(
        &files,
        "deploy/nomad/consumer.nomad.hcl",
        "args  = [\"consumer\"]",
        "args  = [\"consumers\"]",
    );
    let findings = check_all(&bad, &ctx, IMAGE);
    assert_reported(&findings, &["`consumers` is not a subcommand"]);
    assert_reported(&findings, &["no Nomad job runs `orderly consumer`"]);
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "default     = \"orderly:latest\"",
        "default     = \"orderly:old\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["variable image defaults to"],
    );
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "nomadVar \"nomad/jobs/orderly\" }}{{ .auth_private_key }}",
        "nomadVar \"nomad/jobs/orderly-auth\" }}{{ .auth_private_key }}",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["reads the variable nomad/jobs/orderly-auth"],
    );
}

#[test]
fn the_nomad_stop_and_memory_checks_can_fail() {
    let ctx = Ctx::new();
    let files = real_files();
    let bad = with(
        &files,
        "deploy/nomad/orders.nomad.hcl",
        "      kill_timeout   = \"25s\"\n",
        "",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["orders", "no kill_timeout"],
    );
    let bad = with(
        &files,
        "deploy/nomad/worker.nomad.hcl",
        "kill_timeout   = \"25s\"",
        "kill_timeout   = \"10s\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["worker", "kill_timeout 10s is shorter"],
    );
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "      shutdown_delay = \"5s\"\n",
        "",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["auth", "no shutdown_delay"],
    );
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "        memory = 192",
        "        memory = 150",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["auth", "memory Some(150) MiB is less than"],
    );
    let bad = with(
        &files,
        "deploy/nomad/auth.nomad.hcl",
        "        cores  = 2",
        "        cpu    = 500",
    );
    assert_reported(&check_all(&bad, &ctx, IMAGE), &["auth", "reserve `cores`"]);
}

#[test]
fn the_nomad_ops_listener_checks_can_fail() {
    let ctx = Ctx::new();
    let files = real_files();
    let bad = with(
        &files,
        "deploy/nomad/worker.nomad.hcl",
        "        ORDERLY_OPS_BIND = \"0.0.0.0:9090\"\n",
        "",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["worker", "ORDERLY_OPS_BIND should be"],
    );
    let bad = with(
        &files,
        "deploy/nomad/consumer.nomad.hcl",
        "        path     = \"/ready\"",
        "        path     = \"/readyz\"",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["consumer", "no HTTP check on /ready of the ops listener"],
    );
    let bad = with(
        &files,
        "deploy/nomad/consumer.nomad.hcl",
        "      tags     = [\"metrics\"]\n",
        "",
    );
    assert_reported(
        &check_all(&bad, &ctx, IMAGE),
        &["orderly-consumer-ops lacks the tag `metrics`"],
    );
}

#[test]
fn durations_parse_as_nomad_writes_them() {
    assert_eq!(duration("25s"), Some(Duration::from_secs(25)));
    assert_eq!(duration("1m"), Some(Duration::from_secs(60)));
    assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(duration("5"), None);
}
