use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::{Ctx, assert_reported, contract_port, interpolated_names, mutate, read};

/// The YAML with its `<<` merge keys applied, as JSON.
pub fn load(text: &str) -> Result<Value, String> {
    let yaml: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    let mut json = serde_json::to_value(yaml).map_err(|e| e.to_string())?;
    merge_keys(&mut json);
    Ok(json)
}

/// YAML 1.1 merge keys, inner ones first (an anchor may itself merge another);
/// keys written next to `<<` win over merged ones.
fn merge_keys(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(merge_keys),
        Value::Object(map) => {
            map.values_mut().for_each(merge_keys);
            let sources = match map.remove("<<") {
                Some(Value::Array(list)) => list,
                Some(one) => vec![one],
                None => return,
            };
            for source in sources {
                if let Value::Object(src) = source {
                    for (k, val) in src {
                        map.entry(k).or_insert(val);
                    }
                }
            }
        }
        _ => {}
    }
}

fn schema_findings(doc: &Value) -> Vec<String> {
    let schema: Value =
        serde_json::from_str(&read("tests/deploy/compose-spec.json")).expect("schema");
    // The schema's formats (duration, ports, expose) are compose's own, not
    // JSON Schema's: checked by the structure below instead.
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft201909)
        .should_validate_formats(false)
        .build(&schema)
        .expect("the compose schema compiles");
    validator
        .iter_errors(doc)
        .map(|e| format!("schema: {} at {}", e, e.instance_path()))
        .collect()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

pub const ORDERLY_IMAGE: &str = "orderly:latest";

/// Secrets compose must not invent a value for: every use is `${NAME:?…}`.
pub const REQUIRED_SECRETS: &[&str] = &["POSTGRES_AUTH_PASSWORD", "POSTGRES_ORDERS_PASSWORD"];

/// `${NAME…}` uses of `name` in `text` that do not fail when it is unset.
fn lenient_uses(text: &str, name: &str) -> usize {
    let open = format!("${{{name}");
    text.match_indices(&open)
        .filter(|(i, _)| !text[i + open.len()..].starts_with(":?"))
        .count()
}

/// A rotated json-file log: `max-size` and `max-file` set.
fn rotated_logging(svc: &Value) -> bool {
    let Some(logging) = svc.get("logging") else {
        return false;
    };
    let driver = logging.get("driver").and_then(Value::as_str);
    let options = logging.get("options");
    let set = |k: &str| options.and_then(|o| o.get(k)).is_some_and(|v| !v.is_null());
    driver.is_none_or(|d| d == "json-file" || d == "local") && set("max-size") && set("max-file")
}

/// A service running the orderly image: its role is its command's first word.
fn role(svc: &Value) -> Option<String> {
    let image = svc.get("image").and_then(Value::as_str)?;
    if image != ORDERLY_IMAGE && !image.starts_with("orderly") {
        return None;
    }
    strings(svc.get("command"))
        .into_iter()
        .next()
        .or(Some("all".into()))
}

fn one_shot(svc: &Value) -> bool {
    svc.get("restart").and_then(Value::as_str) == Some("no")
}

pub fn profiles(doc: &Value) -> BTreeSet<String> {
    services(doc)
        .values()
        .flat_map(|s| strings(s.get("profiles")))
        .collect()
}

pub fn services(doc: &Value) -> BTreeMap<String, Value> {
    doc.get("services")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// Everything wrong with the compose file `text`.
pub fn check(text: &str, ctx: &Ctx) -> Vec<String> {
    let doc = match load(text) {
        Ok(d) => d,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let mut f = schema_findings(&doc);
    let services = services(&doc);

    for name in REQUIRED_SECRETS {
        let n = lenient_uses(text, name);
        if n > 0 {
            f.push(format!(
                "{n} use(s) of ${{{name}}} without `:?`: a missing secret must stop compose, not default"
            ));
        }
    }

    for name in interpolated_names(text) {
        if !ctx.env_names.contains(&name) && !name.starts_with("COMPOSE_") {
            f.push(format!("${{{name}}} is not a variable the binary reads"));
        }
    }

    let mut reached = BTreeSet::new();
    for (name, svc) in &services {
        let profiles = strings(svc.get("profiles"));
        if profiles.is_empty() {
            f.push(format!(
                "{name}: no profile (it would start in every setup)"
            ));
        }
        if !rotated_logging(svc) {
            f.push(format!(
                "{name}: no log rotation (logging: json-file with max-size and max-file)"
            ));
        }
        let health = svc.get("healthcheck");
        let disabled = health
            .and_then(|h| h.get("disable"))
            .and_then(Value::as_bool)
            == Some(true);
        let test = strings(health.and_then(|h| h.get("test")));
        if one_shot(svc) {
            if !disabled {
                f.push(format!(
                    "{name}: a one-shot job should disable the image's health check"
                ));
            }
        } else if disabled || test.is_empty() {
            f.push(format!("{name}: no health check"));
        }

        if let Some(deps) = svc.get("depends_on") {
            let Some(deps) = deps.as_object() else {
                f.push(format!("{name}: depends_on without conditions"));
                continue;
            };
            for (dep, spec) in deps {
                let Some(target) = services.get(dep) else {
                    f.push(format!("{name}: depends on unknown service {dep}"));
                    continue;
                };
                let want = if one_shot(target) {
                    "service_completed_successfully"
                } else {
                    "service_healthy"
                };
                let got = spec.get("condition").and_then(Value::as_str).unwrap_or("");
                if got != want {
                    f.push(format!(
                        "{name}: depends_on {dep} should wait for {want}, not {got:?}"
                    ));
                }
                let theirs = strings(target.get("profiles"));
                for p in &profiles {
                    if !theirs.contains(p) {
                        f.push(format!(
                            "{name}: depends on {dep}, which profile {p} does not start"
                        ));
                    }
                }
            }
        }

        let Some(role) = role(svc) else { continue };
        if svc.get("image").and_then(Value::as_str) != Some(ORDERLY_IMAGE) {
            f.push(format!(
                "{name}: orderly services all use the image {ORDERLY_IMAGE}"
            ));
        }
        if !ctx.subcommands.contains(&role) {
            f.push(format!("{name}: `{role}` is not a subcommand of orderly"));
        }
        let env = svc
            .get("environment")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        for key in env.keys() {
            if !ctx.env_names.contains(key) {
                f.push(format!(
                    "{name}: environment {key} is not a variable the binary reads"
                ));
            }
            reached.insert(key.clone());
        }
        // The check probes what the role binds, from the same environment.
        let role_check = ["CMD", "orderly", "healthcheck", "--role", role.as_str()];
        if !one_shot(svc) && !test.iter().eq(role_check.iter()) {
            f.push(format!(
                "{name}: health check should be {role_check:?} (what the role binds)"
            ));
        }
        if matches!(role.as_str(), "consumer" | "worker") {
            match env.get("ORDERLY_OPS_BIND").and_then(Value::as_str) {
                Some(bind) if bind.starts_with("0.0.0.0:") => {}
                _ => f.push(format!(
                    "{name}: ORDERLY_OPS_BIND should be 0.0.0.0:PORT (health check and /metrics)"
                )),
            }
        }
        let serves: Vec<&str> = match role.as_str() {
            "all" => vec!["auth", "orders"],
            "auth" | "orders" => vec![role.as_str()],
            _ => vec![],
        };
        let published = strings(svc.get("ports"));
        for s in &serves {
            let port = contract_port(s).expect("http roles have a contract port");
            let bind = if *s == "auth" {
                "AUTH_BIND"
            } else {
                "ORDERS_BIND"
            };
            if env.get(bind).and_then(Value::as_str) != Some(&format!("0.0.0.0:{port}")) {
                f.push(format!(
                    "{name}: {bind} should be 0.0.0.0:{port} (contract)"
                ));
            }
            if !published.contains(&format!("{port}:{port}")) {
                f.push(format!("{name}: should publish {port}:{port} (contract)"));
            }
        }
    }
    for name in &ctx.env_names {
        if !reached.contains(name) {
            f.push(format!(
                "{name}: no orderly service receives it (a .env value would be ignored)"
            ));
        }
    }

    // Each profile is a whole setup: every role once, no host port twice.
    let needed: &[(&str, &[&str])] = &[
        (
            "kafka",
            &["auth", "orders", "consumer", "worker", "migrate", "keygen"],
        ),
        (
            "nats",
            &["auth", "orders", "consumer", "worker", "migrate", "keygen"],
        ),
        ("embedded", &["all"]),
    ];
    for (profile, roles) in needed {
        let members: Vec<(&String, &Value)> = services
            .iter()
            .filter(|(_, s)| strings(s.get("profiles")).iter().any(|p| p == profile))
            .collect();
        for r in *roles {
            let n = members
                .iter()
                .filter(|(_, s)| role(s).as_deref() == Some(*r))
                .count();
            if n != 1 {
                f.push(format!(
                    "profile {profile}: {n} services run `orderly {r}`, expected 1"
                ));
            }
        }
        let mut host_ports = BTreeSet::new();
        for (name, s) in &members {
            for p in strings(s.get("ports")) {
                let host = p.split(':').next().unwrap_or_default().to_string();
                if !host_ports.insert(host.clone()) {
                    f.push(format!(
                        "profile {profile}: host port {host} published twice ({name})"
                    ));
                }
            }
        }
    }
    if let Some(bus) = services.iter().find(|(_, s)| {
        strings(s.get("profiles")) == ["kafka"] && role(s).as_deref() == Some("orders")
    }) {
        let env = &bus.1["environment"];
        if env.get("BUS").and_then(Value::as_str) != Some("kafka") {
            f.push(format!(
                "{}: the kafka profile's orders should set BUS=kafka",
                bus.0
            ));
        }
    }
    f
}

fn real() -> String {
    read("docker-compose.yml")
}

#[test]
fn docker_compose_yml_passes_every_check() {
    let findings = check(&real(), &Ctx::new());
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_schema_check_can_fail() {
    let ctx = Ctx::new();
    let bad = mutate(
        &real(),
        "    restart: unless-stopped\n    environment:\n      POSTGRES_USER",
        "    restrat: unless-stopped\n    environment:\n      POSTGRES_USER",
    );
    assert_reported(&check(&bad, &ctx), &["schema", "restrat"]);
    let bad = mutate(
        &real(),
        "condition: service_healthy",
        "condition: service_up",
    );
    assert_reported(&check(&bad, &ctx), &["schema"]);
}

#[test]
fn the_health_check_checks_can_fail() {
    let ctx = Ctx::new();
    let text = real();
    let bad = mutate(
        &text,
        "      test: [\"CMD\", \"redis-cli\", \"ping\"]\n",
        "",
    );
    assert_reported(&check(&bad, &ctx), &["redis", "no health check"]);
    let bad = mutate(
        &text,
        "[\"CMD\", \"orderly\", \"healthcheck\", \"--role\", \"auth\"]",
        "[\"CMD\", \"orderly\", \"healthcheck\", \"--role\", \"orders\"]",
    );
    assert_reported(
        &check(&bad, &ctx),
        &["auth", "health check should be", "\"--role\", \"auth\""],
    );
    let bad = mutate(&text, "  ORDERLY_OPS_BIND: 0.0.0.0:9090\n", "");
    assert_reported(
        &check(&bad, &ctx),
        &["worker", "ORDERLY_OPS_BIND should be 0.0.0.0:PORT"],
    );
}

#[test]
fn the_log_rotation_and_secret_checks_can_fail() {
    let ctx = Ctx::new();
    let text = real();
    let bad = mutate(&text, "    max-file: \"5\"\n", "");
    assert_reported(&check(&bad, &ctx), &["auth", "no log rotation"]);
    let bad = mutate(
        &text,
        "    image: redis:7-alpine\n    logging: *logging\n",
        "    image: redis:7-alpine\n",
    );
    assert_reported(&check(&bad, &ctx), &["redis", "no log rotation"]);
    let bad = mutate(
        &text,
        "${POSTGRES_ORDERS_PASSWORD:?",
        "${POSTGRES_ORDERS_PASSWORD:-change-me}${POSTGRES_ORDERS_PASSWORD:?",
    );
    assert_reported(
        &check(&bad, &ctx),
        &["${POSTGRES_ORDERS_PASSWORD} without `:?`"],
    );
}

#[test]
fn the_port_checks_can_fail() {
    let ctx = Ctx::new();
    let text = real();
    let bad = mutate(
        &text,
        "      - \"8000:8000\"\n    environment:\n      <<: *kafka-env",
        "      - \"8080:8000\"\n    environment:\n      <<: *kafka-env",
    );
    assert_reported(&check(&bad, &ctx), &["orders", "8000:8000"]);
    let bad = mutate(
        &text,
        "  AUTH_BIND: 0.0.0.0:8001\n  ORDERS_BIND: 0.0.0.0:8000\n  # consumer and worker",
        "  AUTH_BIND: 0.0.0.0:8002\n  ORDERS_BIND: 0.0.0.0:8000\n  # consumer and worker",
    );
    assert_reported(&check(&bad, &ctx), &["AUTH_BIND should be 0.0.0.0:8001"]);
}

#[test]
fn the_env_name_checks_can_fail() {
    let ctx = Ctx::new();
    let text = real();
    let bad = mutate(
        &text,
        "  WORKER_CONCURRENCY: ${WORKER_CONCURRENCY:-}",
        "  WORKER_CONCURENCY: ${WORKER_CONCURENCY:-}",
    );
    let findings = check(&bad, &ctx);
    assert_reported(
        &findings,
        &["WORKER_CONCURENCY is not a variable the binary reads"],
    );
    assert_reported(
        &findings,
        &["WORKER_CONCURRENCY: no orderly service receives it"],
    );
    let bad = mutate(
        &text,
        "${POSTGRES_AUTH_PASSWORD:?",
        "${POSTGRES_AUTH_PASWORD:?",
    );
    assert_reported(&check(&bad, &ctx), &["${POSTGRES_AUTH_PASWORD}"]);
}

#[test]
fn the_role_image_and_depends_on_checks_can_fail() {
    let ctx = Ctx::new();
    let text = real();
    let bad = mutate(
        &text,
        "    command: [\"consumer\"]\n    environment:\n      <<: *kafka-env",
        "    command: [\"consume\"]\n    environment:\n      <<: *kafka-env",
    );
    assert_reported(&check(&bad, &ctx), &["`consume` is not a subcommand"]);
    let bad = mutate(&text, "  image: orderly:latest\n", "  image: orderly:dev\n");
    assert_reported(&check(&bad, &ctx), &["use the image orderly:latest"]);
    let bad = mutate(
        &text,
        "      migrate:\n        condition: service_completed_successfully\n    healthcheck:\n      <<: *healthcheck\n      test: [\"CMD\", \"orderly\", \"healthcheck\", \"--role\", \"auth\"]",
        "      migrate:\n        condition: service_healthy\n    healthcheck:\n      <<: *healthcheck\n      test: [\"CMD\", \"orderly\", \"healthcheck\", \"--role\", \"auth\"]",
    );
    assert_reported(
        &check(&bad, &ctx),
        &["auth: depends_on migrate should wait for service_completed_successfully"],
    );
    let bad = mutate(
        &text,
        "    profiles: [kafka]\n    restart: unless-stopped\n    # One node",
        "    profiles: [nats]\n    restart: unless-stopped\n    # One node",
    );
    assert_reported(
        &check(&bad, &ctx),
        &["depends on kafka, which profile kafka does not start"],
    );
}
