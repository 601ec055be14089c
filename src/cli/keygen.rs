//! `orderly keygen`: a new RS256 pair for a key rotation (README, "Key
//! rotation"); prints the kid its tokens will carry.

use std::path::PathBuf;

use anyhow::{Context, Result};

use orderly_auth::keys::{PRIVATE_KEY_FILE, PUBLIC_KEY_FILE};

/// Writes the pair into `dir`; with `if_missing`, a complete existing pair is
/// kept and reported instead.
pub async fn run(dir: PathBuf, if_missing: bool) -> Result<()> {
    let (private, public) = (dir.join(PRIVATE_KEY_FILE), dir.join(PUBLIC_KEY_FILE));
    // Half a pair still fails below: replacing it would orphan issued tokens.
    if if_missing && private.is_file() && public.is_file() {
        println!(
            "kept the existing pair {} and {}",
            private.display(),
            public.display()
        );
        return Ok(());
    }
    let (private, public) =
        tokio::task::spawn_blocking(move || orderly_auth::keys::generate_keypair(&dir))
            .await
            .context("key generation task")??;
    let text = std::fs::read_to_string(&public)
        .with_context(|| format!("cannot read back {}", public.display()))?;
    let kid = orderly_http::token::keys_from_pem_text(&text, &public.display().to_string())?
        .first()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    println!(
        "wrote {} (mode 0600) and {}\nkid: {kid}",
        private.display(),
        public.display()
    );
    Ok(())
}
