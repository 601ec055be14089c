//! docs/configuration.md against the code's list of variables, and what the
//! binary says at start about the environment: unknown variables, and the
//! log format it picks.

use std::process::{Command, Output};

use orderly_core::config::{REGENERATE_CONFIGURATION_DOC, configuration_markdown};

use crate::support::{assert_reported, mutate, read};

const DOC: &str = "docs/configuration.md";

/// How the committed doc differs from what the code generates.
fn doc_findings(committed: &str) -> Vec<String> {
    let generated = configuration_markdown();
    if committed == generated {
        return Vec::new();
    }
    let first = committed
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
    vec![format!(
        "{DOC} differs from the variables in services/core/src/config/names.rs \
         (first at line {}); regenerate it: {REGENERATE_CONFIGURATION_DOC}",
        first + 1
    )]
}

#[test]
fn the_configuration_doc_is_generated_from_the_code() {
    let findings = doc_findings(&read(DOC));
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn the_configuration_doc_check_can_fail() {
    let bad = mutate(
        &read(DOC),
        "| `WORKER_CONCURRENCY` | `8000` |",
        "| `WORKER_CONCURRENCY` | `8` |",
    );
    assert_reported(
        &doc_findings(&bad),
        &[
            "docs/configuration.md differs",
            "cargo run -q -p orderly-core --example configuration_doc",
        ],
    );
}

/// `orderly migrate` on a fresh SQLite directory: quick, and it logs. Runs in
/// that directory, so no .env of the repository is read.
fn migrate_with(env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
    cmd.arg("migrate").current_dir(dir.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("ORDERLY_")
            || k.starts_with("AUTH_")
            || k.starts_with("ORDERS_")
            || k.starts_with("JOB_")
            || k.starts_with("WORKER_")
            || k.starts_with("POSTGRES_")
            || k == "LOG_FORMAT"
            || k == "RUST_LOG"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("ORDERLY_DATA_DIR", dir.path().join("data"));
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("run orderly migrate");
    assert!(out.status.success(), "{out:?}");
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_unknown_variable_is_named_at_start_with_the_closest_known_one() {
    let out = migrate_with(&[("ORDERS_RATE_LIMT", "5/minute"), ("LOG_FORMAT", "text")]);
    let err = stderr(&out);
    assert!(
        err.contains("ORDERS_RATE_LIMT is not a variable orderly reads")
            && err.contains("did you mean ORDERS_RATE_LIMIT?"),
        "{err}"
    );
    let quiet = stderr(&migrate_with(&[("LOG_FORMAT", "text")]));
    assert!(!quiet.contains("not a variable orderly reads"), "{quiet}");
}

#[test]
fn logs_are_json_when_stderr_is_not_a_terminal() {
    let err = stderr(&migrate_with(&[]));
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "no log lines");
    for line in lines {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|v| v.is_object()),
            "not a JSON line: {line}"
        );
    }
}

#[test]
fn log_format_text_gives_readable_lines_and_a_bad_value_is_named() {
    let err = stderr(&migrate_with(&[("LOG_FORMAT", "text")]));
    assert!(err.contains("migrations applied"), "{err}");
    assert!(
        !err.lines().any(|l| l.starts_with('{')),
        "JSON with LOG_FORMAT=text:\n{err}"
    );
    assert!(!err.contains('\u{1b}'), "colour codes on a pipe:\n{err}");

    let err = stderr(&migrate_with(&[("LOG_FORMAT", "xml")]));
    assert!(
        err.contains("LOG_FORMAT=\\\"xml\\\" is not valid")
            || err.contains("LOG_FORMAT=\"xml\" is not valid"),
        "{err}"
    );
}
