//! Prints docs/configuration.md, the reference of every variable orderly reads.
//!
//! Run with `cargo run -q -p orderly-core --example configuration_doc > docs/configuration.md`

fn main() {
    print!("{}", orderly_core::config::configuration_markdown());
}
