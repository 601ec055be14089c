//! The monitoring files in deploy/ (Prometheus scrape configurations, alert
//! rules, the Grafana dashboard) against the binary: every metric they name
//! is in `orderly_core::metric_catalog`, the catalogue is what the code
//! records, and every role's /metrics is scraped where compose serves it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::{assert_reported, mutate, read, root};

const ALERTS: &str = "deploy/prometheus/alerts.yml";
const DASHBOARD: &str = "deploy/grafana/orderly.json";
const COMPOSE_SCRAPE: &str = "deploy/prometheus/prometheus.yml";
const NOMAD_SCRAPE: &str = "deploy/prometheus/nomad.yml";

/// The alerts the deployment must have: outbox lag, dead letters, queue
/// depth, 5xx ratio.
const REQUIRED_ALERTS: &[&str] = &[
    "OrderlyOutboxLag",
    "OrderlyDeadLetters",
    "OrderlyQueueDepth",
    "OrderlyHttp5xxRatio",
];

/// Series Prometheus makes itself.
const PROMETHEUS_OWN: &[&str] = &["up"];

const PROMQL_WORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "inf",
    "nan",
    "Inf",
    "NaN",
];

/// Every series a scrape of orderly can show (a histogram's three each).
fn exported_series() -> BTreeSet<String> {
    orderly_core::metric_catalog::METRICS
        .iter()
        .flat_map(orderly_core::metric_catalog::series_names)
        .chain(PROMETHEUS_OWN.iter().map(|s| s.to_string()))
        .collect()
}

/// `text` without the spans that open with `open` and close with `close`
/// (label matchers, ranges, strings), nesting ignored.
fn without_spans(text: &str, open: char, close: char) -> String {
    let mut out = String::new();
    let mut inside = false;
    for c in text.chars() {
        if !inside && c == open {
            inside = true;
            out.push(' ');
        } else if inside && c == close {
            inside = false;
        } else if !inside {
            out.push(c);
        }
    }
    out
}

/// The metric names in a PromQL expression: identifiers that are not
/// functions, keywords, label names or durations.
pub fn promql_metrics(expr: &str) -> BTreeSet<String> {
    let text = without_spans(expr, '"', '"');
    let text = without_spans(&text, '{', '}');
    let text = without_spans(&text, '[', ']');
    // `by (a, b)` and friends: label names, not metrics.
    let mut cleaned = String::new();
    let mut rest = text.as_str();
    'outer: while !rest.is_empty() {
        for word in [
            "by",
            "without",
            "on",
            "ignoring",
            "group_left",
            "group_right",
        ] {
            if let Some(after) = rest.strip_prefix(word)
                && !cleaned.ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
                && after.trim_start().starts_with('(')
                && !after.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            {
                let after = after.trim_start();
                let close = after.find(')').map_or(after.len(), |i| i + 1);
                cleaned.push(' ');
                rest = &after[close..];
                continue 'outer;
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        cleaned.push(c);
        rest = &rest[c.len_utf8()..];
    }
    let mut names = BTreeSet::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_alphabetic() || chars[i] == '_' || chars[i] == ':';
        let after_number = i > 0 && (chars[i - 1].is_ascii_digit() || chars[i - 1] == '.');
        if !starts || after_number {
            i += 1;
            continue;
        }
        let begin = i;
        while i < chars.len()
            && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
        {
            i += 1;
        }
        let word: String = chars[begin..i].iter().collect();
        let next = chars[i..].iter().find(|c| !c.is_whitespace());
        if next != Some(&'(') && !PROMQL_WORDS.contains(&word.as_str()) {
            names.insert(word);
        }
    }
    names
}

/// The expressions of an alert rules file: (alert name, expr).
fn alert_rules(text: &str) -> Result<Vec<(String, String)>, String> {
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let doc: Value = serde_json::to_value(doc).map_err(|e| e.to_string())?;
    let mut rules = Vec::new();
    for group in doc["groups"].as_array().ok_or("no groups")? {
        for rule in group["rules"].as_array().ok_or("a group without rules")? {
            let name = rule["alert"]
                .as_str()
                .or(rule["record"].as_str())
                .unwrap_or("?");
            let expr = rule["expr"].as_str().ok_or(format!("{name}: no expr"))?;
            rules.push((name.to_string(), expr.to_string()));
        }
    }
    Ok(rules)
}

/// Every `expr` in a dashboard, at any depth (rows nest panels).
fn dashboard_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(e)) = map.get("expr") {
                out.push(e.clone());
            }
            map.values().for_each(|v| dashboard_exprs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, out)),
        _ => {}
    }
}

/// Metrics named in `exprs` that orderly does not export.
fn unknown_metrics(file: &str, exprs: &[(String, String)]) -> Vec<String> {
    let exported = exported_series();
    let mut f = Vec::new();
    for (what, expr) in exprs {
        for name in promql_metrics(expr) {
            if !exported.contains(&name) {
                f.push(format!(
                    "{file}: {what} names {name}, which orderly does not export"
                ));
            }
        }
    }
    f
}

pub fn check_alerts(text: &str) -> Vec<String> {
    let rules = match alert_rules(text) {
        Ok(r) => r,
        Err(e) => return vec![format!("{ALERTS}: {e}")],
    };
    let mut f = unknown_metrics(ALERTS, &rules);
    for name in REQUIRED_ALERTS {
        if !rules.iter().any(|(n, _)| n == name) {
            f.push(format!("{ALERTS}: no alert {name}"));
        }
    }
    f
}

pub fn check_dashboard(text: &str) -> Vec<String> {
    let doc: Value = match serde_json::from_str(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("{DASHBOARD}: not JSON: {e}")],
    };
    let mut exprs = Vec::new();
    dashboard_exprs(&doc, &mut exprs);
    if exprs.is_empty() {
        return vec![format!("{DASHBOARD}: no queries")];
    }
    let exprs: Vec<(String, String)> = exprs.into_iter().map(|e| ("a panel".into(), e)).collect();
    unknown_metrics(DASHBOARD, &exprs)
}

fn yaml(text: &str) -> Result<Value, String> {
    let doc: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    serde_json::to_value(doc).map_err(|e| e.to_string())
}

/// A scrape configuration loads the alert rules next to it.
fn rule_file_findings(file: &str, doc: &Value) -> Vec<String> {
    let rules: Vec<&str> = doc["rule_files"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let mut f = Vec::new();
    if !rules.iter().any(|r| dir.join(r) == Path::new(ALERTS)) {
        f.push(format!("{file}: does not load {ALERTS}"));
    }
    for r in rules {
        if !root().join(dir).join(r).exists() {
            f.push(format!("{file}: rule file {r} does not exist"));
        }
    }
    f
}

/// The compose scrape configuration reaches every role's /metrics: a DNS
/// name every setup (profile) answers for, at the port the role serves.
pub fn check_compose_scrape(text: &str, compose: &str) -> Vec<String> {
    let doc = match yaml(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("{COMPOSE_SCRAPE}: {e}")],
    };
    let mut f = rule_file_findings(COMPOSE_SCRAPE, &doc);
    let compose = crate::compose::load(compose).expect("compose");
    let services = crate::compose::services(&compose);
    // What each DNS name runs, per profile: the service name and its aliases.
    let answers = |dns: &str, profile: &str| -> Option<(String, Value)> {
        services.iter().find_map(|(name, svc)| {
            let in_profile = svc["profiles"]
                .as_array()
                .is_some_and(|p| p.iter().any(|x| x == profile));
            let aliases = svc["networks"]["default"]["aliases"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let named = name == dns || aliases.iter().any(|a| a == dns);
            (in_profile && named).then(|| (name.clone(), svc.clone()))
        })
    };
    let jobs = doc["scrape_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for role in ["auth", "orders", "consumer", "worker"] {
        let targets: Vec<(String, u64)> = jobs
            .iter()
            .flat_map(|j| j["dns_sd_configs"].as_array().cloned().unwrap_or_default())
            .flat_map(|sd| {
                let port = sd["port"].as_u64().unwrap_or(0);
                sd["names"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |n| n.as_str().map(|n| (n.to_string(), port)))
            })
            .filter(|(n, _)| n == role)
            .collect();
        let Some((dns, port)) = targets.first() else {
            f.push(format!("{COMPOSE_SCRAPE}: nothing scrapes {role}"));
            continue;
        };
        for profile in ["kafka", "nats"] {
            let Some((service, svc)) = answers(dns, profile) else {
                f.push(format!(
                    "{COMPOSE_SCRAPE}: no service of profile {profile} answers to {dns}"
                ));
                continue;
            };
            let command = svc["command"][0].as_str().unwrap_or("all");
            if command != role {
                f.push(format!(
                    "{COMPOSE_SCRAPE}: {dns} is {service}, which runs `orderly {command}`"
                ));
            }
            let bind = match role {
                "auth" => "AUTH_BIND",
                "orders" => "ORDERS_BIND",
                _ => "ORDERLY_OPS_BIND",
            };
            let bound = svc["environment"][bind].as_str().unwrap_or_default();
            if !bound.ends_with(&format!(":{port}")) {
                f.push(format!(
                    "{COMPOSE_SCRAPE}: scrapes {dns}:{port}, but {service} has {bind}={bound:?}"
                ));
            }
        }
    }
    f
}

pub fn check_nomad_scrape(text: &str) -> Vec<String> {
    let doc = match yaml(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("{NOMAD_SCRAPE}: {e}")],
    };
    let mut f = rule_file_findings(NOMAD_SCRAPE, &doc);
    let jobs = doc["scrape_configs"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let keeps_metrics_tag = jobs.iter().any(|j| {
        j.get("nomad_sd_configs").is_some()
            && j["relabel_configs"].as_array().is_some_and(|r| {
                r.iter().any(|c| {
                    c["action"] == "keep"
                        && c["regex"].as_str().is_some_and(|x| x.contains(",metrics,"))
                })
            })
    });
    if !keeps_metrics_tag {
        f.push(format!(
            "{NOMAD_SCRAPE}: no nomad_sd_configs job keeping the services tagged `metrics`"
        ));
    }
    f
}

/// The metric names the code records: string literals shaped like one
/// (`…_total`, `…_seconds`, `…_depth`, `…_unsent`) outside test modules.
fn code_metric_names() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut files = Vec::new();
    for dir in ["src", "bus/src", "services", "adapters"] {
        rust_files(&root().join(dir), &mut files);
    }
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for literal in string_literals(code) {
            let shaped = literal
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && ["_total", "_seconds", "_depth", "_unsent"]
                    .iter()
                    .any(|s| literal.ends_with(s))
                && literal.contains('_')
                && !literal.starts_with('_');
            if shaped {
                names.insert(literal);
            }
        }
    }
    names
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            // Integration tests, benchmarks' fixtures and the catalogue's own crate's
            // tests record made-up names.
            if name != "tests" && name != "target" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") && !name.ends_with("_tests.rs") && name != "tests.rs" {
            out.push(path);
        }
    }
}

/// The contents of the string literals in Rust source (raw strings too;
/// char literals and comments are not strings).
fn string_literals(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let boundary = i == 0 || !ident(chars[i - 1]) || chars[i - 1] == 'b';
        if c == '/' && chars.get(i + 1) == Some(&'/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '\'' {
            // A char literal ('"', '\'') or a lifetime ('a): skip the char literal.
            match (chars.get(i + 1), chars.get(i + 2), chars.get(i + 3)) {
                (Some('\\'), _, _) => {
                    i += 3;
                    while i < chars.len() && chars[i] != '\'' {
                        i += 1;
                    }
                    i += 1;
                }
                (Some(_), Some('\''), _) => i += 3,
                _ => i += 1,
            }
        } else if c == 'r' && boundary && matches!(chars.get(i + 1), Some('#' | '"')) {
            let hashes = chars[i + 1..].iter().take_while(|c| **c == '#').count();
            let open = i + 1 + hashes;
            if chars.get(open) != Some(&'"') {
                i += 1;
                continue;
            }
            let mut end = open + 1;
            let mut text = String::new();
            while end < chars.len() {
                if chars[end] == '"'
                    && chars[end + 1..]
                        .iter()
                        .take(hashes)
                        .filter(|c| **c == '#')
                        .count()
                        == hashes
                {
                    break;
                }
                text.push(chars[end]);
                end += 1;
            }
            out.push(text);
            i = end + 1 + hashes;
        } else if c == '"' {
            let mut text = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                if let Some(c) = chars.get(i) {
                    text.push(*c);
                }
                i += 1;
            }
            out.push(text);
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn string_literals_skip_chars_comments_and_read_raw_strings() {
    let code = "let a = '\"'; // \"not_total\"\nlet b = \"jobs_dead_total\"; let c = r#\"x \"q\" y\"#; let d = \"a\\\"b\"; fn f<'a>() {}";
    assert_eq!(
        string_literals(code),
        ["jobs_dead_total", "x \"q\" y", "a\"b"]
    );
}

/// The catalogue and the code name the same metrics.
fn catalogue_findings(in_code: &BTreeSet<String>) -> Vec<String> {
    let listed: BTreeSet<String> = orderly_core::metric_catalog::METRICS
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    let mut f = Vec::new();
    for n in in_code.difference(&listed) {
        f.push(format!(
            "the code records {n}, which orderly_core::metric_catalog::METRICS does not list"
        ));
    }
    for n in listed.difference(in_code) {
        f.push(format!(
            "METRICS lists {n}, which no code records (a name changed?)"
        ));
    }
    f
}

#[test]
fn the_alert_rules_name_only_exported_metrics_and_cover_the_required_alerts() {
    let findings = check_alerts(&read(ALERTS));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_dashboard_names_only_exported_metrics() {
    let findings = check_dashboard(&read(DASHBOARD));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn prometheus_scrapes_every_role_where_compose_and_nomad_serve_it() {
    let mut findings = check_compose_scrape(&read(COMPOSE_SCRAPE), &read("docker-compose.yml"));
    findings.extend(check_nomad_scrape(&read(NOMAD_SCRAPE)));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_metric_catalogue_is_what_the_code_records() {
    let findings = catalogue_findings(&code_metric_names());
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_monitoring_checks_can_fail() {
    let alerts = read(ALERTS);
    let bad = mutate(
        &alerts,
        "max(outbox_oldest_unsent_seconds)",
        "max(outbox_lag_seconds)",
    );
    assert_reported(
        &check_alerts(&bad),
        &["OrderlyOutboxLag names outbox_lag_seconds"],
    );
    let bad = mutate(&alerts, "alert: OrderlyDeadLetters", "alert: OrderlyDead");
    assert_reported(&check_alerts(&bad), &["no alert OrderlyDeadLetters"]);
    let dashboard = read(DASHBOARD);
    let bad = mutate(
        &dashboard,
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_quantile",
    );
    assert_reported(
        &check_dashboard(&bad),
        &["http_request_duration_seconds_quantile"],
    );
    let compose = read("docker-compose.yml");
    let scrape = read(COMPOSE_SCRAPE);
    let bad = mutate(
        &scrape,
        "names: [worker]\n        type: A\n        port: 9090",
        "names: [worker]\n        type: A\n        port: 9091",
    );
    assert_reported(
        &check_compose_scrape(&bad, &compose),
        &["scrapes worker:9091", "ORDERLY_OPS_BIND"],
    );
    let bad = mutate(
        &compose,
        "        aliases: [consumer]\n",
        "        aliases: [consumers]\n",
    );
    assert_reported(
        &check_compose_scrape(&scrape, &bad),
        &["no service of profile nats answers to consumer"],
    );
    let bad = mutate(&read(NOMAD_SCRAPE), "regex: .*,metrics,.*", "regex: .*");
    assert_reported(&check_nomad_scrape(&bad), &["tagged `metrics`"]);

    let mut code = code_metric_names();
    code.insert("orders_refunded_total".into());
    code.remove("outbox_unsent");
    let findings = catalogue_findings(&code);
    assert_reported(&findings, &["the code records orders_refunded_total"]);
    assert_reported(&findings, &["METRICS lists outbox_unsent"]);
}

#[test]
fn promql_metric_names_leave_out_functions_labels_and_durations() {
    let names = promql_metrics(
        "histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{status=~\"5..\"}[5m]))) / on (job) group_left up > 1e3",
    );
    assert_eq!(
        names,
        BTreeSet::from([
            "http_request_duration_seconds_bucket".to_string(),
            "up".to_string()
        ])
    );
    assert_eq!(
        promql_metrics("max by (queue) (job_queue_depth{state=\"dead\"}) > 0"),
        BTreeSet::from(["job_queue_depth".to_string()])
    );
}

/// A process of the test's own, killed on drop.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A plain HTTP/1.0 GET (no chunked encoding to undo); `None` while nothing answers.
fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn a_running_binary_exports_histograms_with_buckets_and_only_catalogued_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", orderly_testkit::free_port());
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("auth")
        .current_dir(dir.path())
        .env("ORDERLY_DATA_DIR", dir.path().join("data"))
        .env("AUTH_BIND", &addr)
        .env_remove("AUTH_DATABASE_URL")
        .env_remove("POSTGRES_AUTH_HOST")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start orderly auth");
    let _running = Running(child);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while get(&addr, "/health")
        .is_none_or(|r| !r.lines().next().is_some_and(|l| l.contains(" 200")))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "auth never answered /health"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let metrics = get(&addr, "/metrics").expect("/metrics");
    assert!(
        metrics.contains("http_request_duration_seconds_bucket{")
            && metrics.contains("le=\"+Inf\""),
        "no histogram buckets:\n{metrics}"
    );
    assert!(!metrics.contains("quantile=\""), "a summary:\n{metrics}");
    assert!(
        metrics.contains("# HELP http_requests_total "),
        "not described:\n{metrics}"
    );
    let exported = exported_series();
    let body = metrics.split("\r\n\r\n").nth(1).unwrap_or_default();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        assert!(
            exported.contains(&name),
            "{name} is exported but not in orderly_core::metric_catalog::METRICS"
        );
    }
}
