use crate::support::{assert_reported, mutate, read};

/// The shell lines of a file with `\` continuations joined.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    out
}

/// `cargo build …` commands in `text`, each up to `&&` or the line's end.
pub fn cargo_builds(text: &str) -> Vec<String> {
    logical_lines(text)
        .iter()
        .filter(|l| !l.starts_with('#'))
        .flat_map(|l| {
            l.split("&&")
                .map(str::trim)
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter_map(|part| {
            part.find("cargo build")
                .map(|i| part[i..].split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .collect()
}

pub fn check(dockerfile: &str, ci_script: &str, cargo_toml: &str) -> Vec<String> {
    let mut f = Vec::new();
    let docker = cargo_builds(dockerfile);
    let ci = cargo_builds(ci_script);
    match docker.as_slice() {
        [one] if ci.contains(one) => {}
        [one] => f.push(format!(
            "the Dockerfile builds with `{one}`, CI with {ci:?}"
        )),
        many => f.push(format!(
            "expected one cargo build in the Dockerfile, found {many:?}"
        )),
    }
    let lines = logical_lines(dockerfile);
    for (needle, what) in [
        ("USER ", "a non-root USER"),
        ("HEALTHCHECK ", "a HEALTHCHECK"),
        ("ENTRYPOINT [\"orderly\"]", "ENTRYPOINT [\"orderly\"]"),
    ] {
        if !lines.iter().any(|l| l.starts_with(needle)) {
            f.push(format!("the Dockerfile lacks {what}"));
        }
    }
    // One HEALTHCHECK for every role: no fixed targets, so `orderly
    // healthcheck` probes what the container's role binds.
    if let Some(check) = lines.iter().find(|l| l.starts_with("HEALTHCHECK "))
        && (!check.ends_with("CMD [\"orderly\", \"healthcheck\"]"))
    {
        f.push(format!(
            "the HEALTHCHECK should be CMD [\"orderly\", \"healthcheck\"] (role-aware), not {check:?}"
        ));
    }
    let ops_port = lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .find_map(|w| w.strip_prefix("ORDERLY_OPS_BIND=0.0.0.0:"));
    match ops_port {
        None => f.push(
            "the image sets no ORDERLY_OPS_BIND=0.0.0.0:PORT (consumer and worker health checks)"
                .into(),
        ),
        Some(port) => {
            let exposed = lines
                .iter()
                .filter(|l| l.starts_with("EXPOSE "))
                .any(|l| l.split_whitespace().any(|w| w == port));
            if !exposed {
                f.push(format!("the image does not EXPOSE the ops port {port}"));
            }
        }
    }
    if lines
        .iter()
        .any(|l| l.starts_with("USER root") || l.starts_with("USER 0"))
    {
        f.push("the runtime runs as root".into());
    }
    // The builder's toolchain must satisfy the workspace's rust-version.
    let arg = lines
        .iter()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .unwrap_or("0");
    let msrv = cargo_toml
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version = \""))
        .map(|v| v.trim_end_matches('"'))
        .unwrap_or("0");
    let parse = |v: &str| {
        v.split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    if parse(arg) < parse(msrv) {
        f.push(format!(
            "the Dockerfile's Rust {arg} is older than the workspace's rust-version {msrv}"
        ));
    }
    f
}

#[test]
fn the_dockerfile_builds_what_ci_builds() {
    let findings = check(
        &read("Dockerfile"),
        &read("scripts/test"),
        &read("Cargo.toml"),
    );
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_dockerfile_check_can_fail() {
    let (docker, ci, toml) = (read("Dockerfile"), read("scripts/test"), read("Cargo.toml"));
    let bad = mutate(
        &docker,
        "cargo build --release --locked -p orderly",
        "cargo build --release -p orderly",
    );
    assert_reported(
        &check(&bad, &ci, &toml),
        &["the Dockerfile builds with `cargo build --release -p orderly`"],
    );
    let bad = mutate(&docker, "USER orderly:orderly", "USER root");
    assert_reported(&check(&bad, &ci, &toml), &["root"]);
    let bad = mutate(&docker, "HEALTHCHECK ", "# HEALTHCHECK ");
    assert_reported(&check(&bad, &ci, &toml), &["HEALTHCHECK"]);
    let bad = mutate(
        &docker,
        "CMD [\"orderly\", \"healthcheck\"]",
        "CMD [\"orderly\", \"healthcheck\", \"http://127.0.0.1:8000/health\"]",
    );
    assert_reported(&check(&bad, &ci, &toml), &["role-aware"]);
    let bad = mutate(&docker, "EXPOSE 8000 8001 9090", "EXPOSE 8000 8001");
    assert_reported(&check(&bad, &ci, &toml), &["EXPOSE the ops port 9090"]);
    let bad = mutate(&docker, "ARG RUST_VERSION=", "ARG RUST_VERSION=1.70 #");
    assert_reported(
        &check(&bad, &ci, &toml),
        &["older than the workspace's rust-version"],
    );
}
