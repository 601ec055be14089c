use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn exists(rel: &str) -> bool {
    Path::new(&root()).join(rel).exists()
}

/// Every variable the binary reads, from the code itself.
pub fn env_names() -> BTreeSet<String> {
    orderly_core::config::ENV_NAMES
        .iter()
        .chain(orderly_core::telemetry::ENV_NAMES)
        .map(|s| s.to_string())
        .collect()
}

/// The binary's subcommands, asked of the binary (`orderly --help`).
pub fn subcommands() -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orderly"))
        .arg("--help")
        .output()
        .expect("run orderly --help");
    assert!(out.status.success(), "orderly --help failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let section = text
        .split("Commands:")
        .nth(1)
        .expect("a Commands: section in --help");
    let names: BTreeSet<String> = section
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    assert!(names.contains("all") && names.contains("auth"), "{text}");
    names
}

/// Everything the checks compare files with.
pub struct Ctx {
    pub env_names: BTreeSet<String>,
    pub subcommands: BTreeSet<String>,
}

impl Ctx {
    pub fn new() -> Self {
        Self {
            env_names: env_names(),
            subcommands: subcommands(),
        }
    }
}

/// The contract's ports (CONTRACT.md, "Ports and processes").
pub fn contract_port(role: &str) -> Option<u16> {
    match role {
        "auth" => Some(8001),
        "orders" => Some(8000),
        _ => None,
    }
}

/// The names in `${NAME}`, `${NAME:-x}`, `${NAME:?x}` (not `$${…}`, an escape).
pub fn interpolated_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("${") {
        let start = i + pos;
        i = start + 2;
        if start > 0 && bytes[start - 1] == b'$' {
            continue;
        }
        let name: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// Asserts that `findings` has one mentioning every part of `needle`.
pub fn assert_reported(findings: &[String], needles: &[&str]) {
    assert!(
        findings
            .iter()
            .any(|f| needles.iter().all(|n| f.contains(n))),
        "expected a finding mentioning {needles:?}, got {findings:#?}"
    );
}

/// `text` with `from` replaced once; panics when `from` is absent, so a
/// mutation test cannot pass by changing nothing.
pub fn mutate(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the file no longer contains {from:?}");
    text.replacen(from, to, 1)
}
