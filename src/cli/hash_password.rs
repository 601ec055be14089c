//! `orderly broker --hash-password`: a password from stdin (so it stays out
//! of the shell's history and the process list) to the bcrypt hash the
//! broker's auth file stores.

use std::io::BufRead;

use anyhow::{Context, Result, anyhow};

pub fn run() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    let hash = orderly_bus::wire::auth::hash_password(password).map_err(|e| anyhow!(e))?;
    println!("{hash}");
    Ok(())
}
