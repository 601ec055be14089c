use std::collections::BTreeSet;

use crate::support::{Ctx, assert_reported, mutate, read};

/// The names in `.env.example`: set (`NAME=value`) or shown with their default
/// (`# NAME=value`).
pub fn names(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start_matches('#').trim())
        .filter_map(|l| l.split_once('=').map(|(k, _)| k))
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_string)
        .collect()
}

/// `.env.example` must list exactly the variables the binary reads (once
/// each), plus docker compose's own `COMPOSE_*`.
pub fn check(text: &str, ctx: &Ctx, profiles: &BTreeSet<String>) -> Vec<String> {
    let mut f = Vec::new();
    let listed = names(text);
    let mut seen = BTreeSet::new();
    for n in &listed {
        if !seen.insert(n.clone()) {
            f.push(format!("{n} is listed twice"));
        }
        if !n.starts_with("COMPOSE_") && !ctx.env_names.contains(n) {
            f.push(format!("{n} is not a variable the binary reads"));
        }
    }
    for n in &ctx.env_names {
        if !seen.contains(n) {
            f.push(format!(
                "{n} is read by the binary but missing from .env.example"
            ));
        }
    }
    // `cargo run` reads .env too: a live line would switch it off the
    // embedded defaults without a word. Only compose's own may be set.
    for line in text.lines().map(str::trim) {
        if let Some((name, _)) = line.split_once('=')
            && !line.starts_with('#')
            && !name.starts_with("COMPOSE_")
        {
            f.push(format!(
                "{name} is set, not commented out: a copied .env would change what `cargo run` uses"
            ));
        }
    }
    for line in text.lines().filter(|l| l.starts_with("COMPOSE_PROFILES=")) {
        for p in line["COMPOSE_PROFILES=".len()..].split(',') {
            if !profiles.contains(p.trim()) {
                f.push(format!(
                    "COMPOSE_PROFILES names {p}, which docker-compose.yml does not define"
                ));
            }
        }
    }
    f
}

fn profiles() -> BTreeSet<String> {
    crate::compose::profiles(&crate::compose::load(&read("docker-compose.yml")).expect("compose"))
}

#[test]
fn env_example_lists_exactly_what_the_binary_reads() {
    let findings = check(&read(".env.example"), &Ctx::new(), &profiles());
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_env_example_check_can_fail() {
    let ctx = Ctx::new();
    let text = read(".env.example");
    let bad = mutate(
        &text,
        "# WORKER_CONCURRENCY=8000",
        "# WORKER_CONCURENCY=8000",
    );
    let findings = check(&bad, &ctx, &profiles());
    assert_reported(&findings, &["WORKER_CONCURENCY is not a variable"]);
    assert_reported(
        &findings,
        &["WORKER_CONCURRENCY is read by the binary but missing"],
    );
    let bad = mutate(
        &text,
        "# POSTGRES_AUTH_PASSWORD=change-me-auth",
        "POSTGRES_AUTH_PASSWORD=change-me-auth",
    );
    assert_reported(
        &check(&bad, &ctx, &profiles()),
        &["POSTGRES_AUTH_PASSWORD is set, not commented out"],
    );
    let bad = mutate(&text, "COMPOSE_PROFILES=kafka", "COMPOSE_PROFILES=kafak");
    assert_reported(&check(&bad, &ctx, &profiles()), &["kafak"]);
}
