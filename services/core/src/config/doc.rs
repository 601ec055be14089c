//! docs/configuration.md, generated from [`VARIABLES`] so the reference
//! cannot drift from what the code reads.

use std::fmt::Write;

use super::names::{Section, VARIABLES};
use super::unknown::OWN_PREFIXES;

/// The command that writes the reference (printed by the test that compares them).
pub const REGENERATE: &str =
    "cargo run -q -p orderly-core --example configuration_doc > docs/configuration.md";

/// The whole of docs/configuration.md.
pub fn configuration_markdown() -> String {
    let mut out = String::new();
    let prefixes: Vec<String> = OWN_PREFIXES.iter().map(|p| format!("`{p}*`")).collect();
    let _ = write!(
        out,
        "# Configuration\n\
         \n\
         <!-- Generated from services/core/src/config/names.rs; do not edit.\n     \
         Regenerate: {REGENERATE} -->\n\
         \n\
         orderly reads its settings from the environment and from an optional `.env` file in\n\
         the working directory (a variable already in the environment wins over the file).\n\
         An empty value counts as unset. A bad value stops the start with one line naming the\n\
         variable. A variable named like orderly's ({}) that orderly does\n\
         not read is named in a warning at start, with the known variable closest to it (a\n\
         typo would otherwise leave the default in force).\n",
        prefixes.join(", ")
    );
    let mut sections: Vec<Section> = VARIABLES.iter().map(|v| v.section).collect();
    sections.sort();
    sections.dedup();
    for section in sections {
        let _ = write!(
            out,
            "\n## {}\n\n| variable | default | meaning |\n|---|---|---|\n",
            section.title()
        );
        for v in VARIABLES.iter().filter(|v| v.section == section) {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                v.name,
                cell(v.default),
                cell(v.meaning)
            );
        }
    }
    out
}

/// A table cell: a `|` would end it.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_one_row() {
        let doc = configuration_markdown();
        for v in VARIABLES {
            let row = format!("| `{}` |", v.name);
            let rows = doc.lines().filter(|l| l.starts_with(&row)).count();
            assert_eq!(rows, 1, "{}", v.name);
        }
    }

    #[test]
    fn a_pipe_in_a_cell_does_not_split_the_row() {
        let doc = configuration_markdown();
        let row = doc
            .lines()
            .find(|l| l.starts_with("| `ORDERS_RATE_LIMIT` |"))
            .expect("ORDERS_RATE_LIMIT row");
        assert!(row.contains("`N/second\\|minute\\|hour`"), "{row}");
    }
}
