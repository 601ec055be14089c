//! The binary's command line and its refusal of bad configuration.

use std::process::Command;

fn orderly(args: &[&str], env: &[(&str, &str)], dir: &std::path::Path) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orderly"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run orderly")
}

fn one_line_error(out: &std::process::Output) -> String {
    assert!(!out.status.success(), "expected failure");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<_> = stderr
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    assert_eq!(errors.len(), 1, "one error line expected:\n{stderr}");
    errors[0].to_string()
}

#[test]
fn help_explains_every_role() {
    let tmp = tempfile::tempdir().unwrap();
    let out = orderly(&["--help"], &[], tmp.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for role in ["all", "auth", "orders", "consumer", "worker", "migrate"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(role)),
            "{role} missing:\n{help}"
        );
    }
}

#[test]
fn a_bad_setting_is_one_clear_line_and_a_failure_exit() {
    let tmp = tempfile::tempdir().unwrap();
    let line = one_line_error(&orderly(
        &["all"],
        &[("ORDERS_BIND", "not-an-address")],
        tmp.path(),
    ));
    assert!(line.contains("ORDERS_BIND"), "{line}");
    let line = one_line_error(&orderly(
        &["all"],
        &[("ORDERS_DATABASE_URL", "mysql://x")],
        tmp.path(),
    ));
    assert!(line.contains("ORDERS_DATABASE_URL"), "{line}");
}

#[test]
fn a_taken_port_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let line = one_line_error(&orderly(&["auth"], &[("AUTH_BIND", &addr)], tmp.path()));
    assert!(line.contains(&addr), "{line}");
}

#[test]
fn an_unreadable_key_file_is_named_in_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("private.pem");
    std::fs::write(&bad, "not a key").unwrap();
    let public = tmp.path().join("public.pem");
    std::fs::write(&public, "not a key either").unwrap();
    let line = one_line_error(&orderly(
        &["auth"],
        &[
            ("AUTH_BIND", "127.0.0.1:0"),
            ("AUTH_PRIVATE_KEY_PATH", bad.to_str().unwrap()),
            ("AUTH_PUBLIC_KEY_PATH", public.to_str().unwrap()),
        ],
        tmp.path(),
    ));
    assert!(line.contains("private.pem"), "{line}");
}

#[test]
fn migrate_creates_both_databases_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = orderly(&["migrate"], &[], tmp.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tmp.path().join("data/auth.db").exists());
    assert!(tmp.path().join("data/orders.db").exists());
}
