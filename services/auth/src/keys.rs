//! The RS256 key pair auth signs tokens with: loaded from disk, or generated on
//! first start so an embedded setup works with nothing configured.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use orderly_http::token::{PasetoSigner, VerifyingKey, keys_from_pem_text};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Key size for generated pairs (RS256 with 2048-bit keys is what the old service used).
pub const KEY_BITS: usize = 2048;
/// File names [`generate_keypair`] writes inside its directory.
pub const PRIVATE_KEY_FILE: &str = "private.pem";
pub const PUBLIC_KEY_FILE: &str = "public.pem";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {} is not an RSA {what} in PEM form: {reason}", path.display())]
    Parse {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error(
        "key file {} exists but {} does not: restore the missing file, or remove both to have a new pair generated",
        present.display(), missing.display()
    )]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error(
        "{} and {} are not a key pair: tokens signed with the private key would not verify",
        private.display(), public.display()
    )]
    Mismatch { private: PathBuf, public: PathBuf },
    #[error("key file {} is not an Ed25519 secret key (base64url of 64 bytes): {reason}", path.display())]
    Paseto { path: PathBuf, reason: String },
    #[error("cannot write key file {}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("RSA key generation failed: {0}")]
    Generate(String),
    #[error("the key loading task failed: {0}")]
    Task(String),
}

/// What the token issuer needs: the signing key, and the public key in PEM for
/// anyone verifying locally (tests, a future JWKS route).
#[derive(Clone)]
pub struct SigningKeys {
    pub encoding: EncodingKey,
    pub public_pem: String,
    /// The public half with its kid (the JWK thumbprint), for headers and the JWKS.
    pub public: VerifyingKey,
}

impl std::fmt::Debug for SigningKeys {
    // The private key never appears in logs or panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys").finish_non_exhaustive()
    }
}

/// Load the pair, or generate it when BOTH files are missing. Any other state
/// (one file missing, unreadable, unparsable, not a pair) is an error naming the
/// path: silently replacing a key would invalidate every issued token and break
/// services verifying with the old public key. Runs on the blocking pool (file
/// I/O, and key generation takes a noticeable fraction of a second).
pub async fn load_or_generate(private: &Path, public: &Path) -> Result<SigningKeys, KeyError> {
    let (private, public) = (private.to_path_buf(), public.to_path_buf());
    tokio::task::spawn_blocking(move || load_or_generate_blocking(&private, &public))
        .await
        .map_err(|e| KeyError::Task(e.to_string()))?
}

fn load_or_generate_blocking(private: &Path, public: &Path) -> Result<SigningKeys, KeyError> {
    match (exists(private)?, exists(public)?) {
        (false, false) => {
            let keys = write_new_pair(private, public)?;
            tracing::info!(
                private_key = %private.display(),
                public_key = %public.display(),
                "no signing keys found: generated a new RSA key pair"
            );
            Ok(keys)
        }
        (true, false) => Err(KeyError::HalfPair {
            present: private.to_path_buf(),
            missing: public.to_path_buf(),
        }),
        (false, true) => Err(KeyError::HalfPair {
            present: public.to_path_buf(),
            missing: private.to_path_buf(),
        }),
        (true, true) => load(private, public),
    }
}

/// Generate a pair into `dir` (created if needed) as `private.pem` (0600) and
/// `public.pem` (0644); refuses to overwrite existing files. For `orderly keygen`.
/// Blocking: call it from `spawn_blocking` inside async code.
pub fn generate_keypair(dir: &Path) -> Result<(PathBuf, PathBuf), KeyError> {
    let private = dir.join(PRIVATE_KEY_FILE);
    let public = dir.join(PUBLIC_KEY_FILE);
    write_new_pair(&private, &public)?;
    Ok((private, public))
}

fn exists(path: &Path) -> Result<bool, KeyError> {
    path.try_exists().map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn load(private_path: &Path, public_path: &Path) -> Result<SigningKeys, KeyError> {
    let private_pem = read_to_string(private_path)?;
    let public_pem = read_to_string(public_path)?;
    warn_if_readable_by_others(private_path);

    // Both PKCS#8 (what we write) and PKCS#1 (`openssl genrsa` of old) are accepted.
    let private = RsaPrivateKey::from_pkcs8_pem(&private_pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&private_pem))
        .map_err(|e| KeyError::Parse {
            path: private_path.to_path_buf(),
            what: "private key",
            reason: e.to_string(),
        })?;
    let public = RsaPublicKey::from_public_key_pem(&public_pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(&public_pem))
        .map_err(|e| KeyError::Parse {
            path: public_path.to_path_buf(),
            what: "public key",
            reason: e.to_string(),
        })?;
    if RsaPublicKey::from(&private) != public {
        return Err(KeyError::Mismatch {
            private: private_path.to_path_buf(),
            public: public_path.to_path_buf(),
        });
    }
    let encoding = signing_key(&private_pem, private_path)?;
    let public = verifying_key(&public, public_path)?;
    Ok(SigningKeys {
        encoding,
        public_pem,
        public,
    })
}

/// The private key as the token signer (aws-lc) holds it. One probe signature
/// proves at start that the signer accepts it, instead of at the first login.
fn signing_key(private_pem: &str, path: &Path) -> Result<EncodingKey, KeyError> {
    let unusable = |reason: String| KeyError::Parse {
        path: path.to_path_buf(),
        what: "private key",
        reason,
    };
    let key =
        EncodingKey::from_rsa_pem(private_pem.as_bytes()).map_err(|e| unusable(e.to_string()))?;
    jsonwebtoken::crypto::sign(b"orderly key check", &key, jsonwebtoken::Algorithm::RS256)
        .map_err(|e| unusable(format!("the token signer cannot use it: {e}")))?;
    Ok(key)
}

fn verifying_key(public: &RsaPublicKey, path: &Path) -> Result<VerifyingKey, KeyError> {
    VerifyingKey::from_rsa(public).map_err(|e| KeyError::Parse {
        path: path.to_path_buf(),
        what: "public key",
        reason: e.to_string(),
    })
}

/// The public keys of earlier signing keys (each file may hold several PEM
/// blocks), published in the JWKS during a rotation's overlap.
pub fn load_previous(paths: &[PathBuf]) -> Result<Vec<VerifyingKey>, KeyError> {
    let mut keys = Vec::new();
    for path in paths {
        let text = read_to_string(path)?;
        keys.extend(
            keys_from_pem_text(&text, &path.display().to_string()).map_err(|e| {
                KeyError::Parse {
                    path: path.clone(),
                    what: "public key",
                    reason: e.to_string(),
                }
            })?,
        );
    }
    Ok(keys)
}

fn read_to_string(path: &Path) -> Result<String, KeyError> {
    std::fs::read_to_string(path).map_err(|source| KeyError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            "the private key is accessible to other users; consider chmod 600"
        );
    }
}

fn write_new_pair(private_path: &Path, public_path: &Path) -> Result<SigningKeys, KeyError> {
    let mut rng = rsa::rand_core::OsRng;
    let private =
        RsaPrivateKey::new(&mut rng, KEY_BITS).map_err(|e| KeyError::Generate(e.to_string()))?;
    let private_pem = private
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;
    let public = RsaPublicKey::from(&private);
    let public_pem = public
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Generate(e.to_string()))?;

    write_new_file(private_path, private_pem.as_bytes(), 0o600)?;
    write_new_file(public_path, public_pem.as_bytes(), 0o644)?;

    let encoding = signing_key(&private_pem, private_path)?;
    let public = verifying_key(&public, public_path)?;
    Ok(SigningKeys {
        encoding,
        public_pem,
        public,
    })
}

/// The Ed25519 key PASETO tokens are signed with: read from `path` (base64url of
/// the 64 secret bytes), or generated there (0600) on first start.
pub async fn load_or_generate_paseto(path: &Path) -> Result<PasetoSigner, KeyError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || load_or_generate_paseto_blocking(&path))
        .await
        .map_err(|e| KeyError::Generate(e.to_string()))?
}

fn load_or_generate_paseto_blocking(path: &Path) -> Result<PasetoSigner, KeyError> {
    let invalid = |reason: String| KeyError::Paseto {
        path: path.to_path_buf(),
        reason,
    };
    if !exists(path)? {
        let secret =
            PasetoSigner::generate_secret().map_err(|e| KeyError::Generate(e.to_string()))?;
        write_new_file(path, URL_SAFE_NO_PAD.encode(&secret).as_bytes(), 0o600)?;
    }
    let text = read_to_string(path)?;
    warn_if_readable_by_others(path);
    let secret = URL_SAFE_NO_PAD
        .decode(text.trim())
        .map_err(|e| invalid(e.to_string()))?;
    PasetoSigner::from_secret_bytes(&secret).map_err(|e| invalid(e.to_string()))
}

/// Create `path` (and its parent directories) with `mode`, failing if it exists:
/// the mode is set at creation so the private key is never briefly world-readable,
/// and `create_new` keeps two starting processes from overwriting each other's key.
fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let write_error = |source| KeyError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        // Owner-only, like the databases beside it: the data directory is often
        // created here first.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(write_error)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(contents).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn missing_keys_are_generated_with_private_permissions_and_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("nested/keys/private.pem");
        let public = dir.path().join("nested/keys/public.pem");

        let generated = load_or_generate(&private, &public).await.unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
        assert!(
            generated
                .public_pem
                .starts_with("-----BEGIN PUBLIC KEY-----")
        );
        let private_text = std::fs::read_to_string(&private).unwrap();
        assert!(private_text.starts_with("-----BEGIN PRIVATE KEY-----"));

        let loaded = load_or_generate(&private, &public).await.unwrap();
        assert_eq!(loaded.public_pem, generated.public_pem);
    }

    #[tokio::test]
    async fn directories_created_for_the_keys_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        load_or_generate(
            &data.join("keys/private.pem"),
            &data.join("keys/public.pem"),
        )
        .await
        .unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("keys")), 0o700);
    }

    #[tokio::test]
    async fn a_lone_key_file_is_an_error_naming_both_paths() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private.pem");
        let public = dir.path().join("public.pem");
        std::fs::write(&public, "x").unwrap();

        let err = load_or_generate(&private, &public).await.unwrap_err();
        assert!(matches!(err, KeyError::HalfPair { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains(&private.display().to_string()), "{text}");
        assert!(text.contains(&public.display().to_string()), "{text}");
        // Nothing was generated over the lone file.
        assert!(!private.exists());
    }

    #[tokio::test]
    async fn an_unparsable_key_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public) = generate_keypair(dir.path()).unwrap();
        std::fs::write(&public, "not a key").unwrap();

        let err = load_or_generate(&private, &public).await.unwrap_err();
        assert!(matches!(err, KeyError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(&public.display().to_string()));
    }

    #[tokio::test]
    async fn keys_from_two_different_pairs_are_rejected() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (private, _) = generate_keypair(a.path()).unwrap();
        let (_, public) = generate_keypair(b.path()).unwrap();
        let err = load_or_generate(&private, &public).await.unwrap_err();
        assert!(matches!(err, KeyError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn generate_keypair_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PRIVATE_KEY_FILE), "keep me").unwrap();
        let err = generate_keypair(dir.path()).unwrap_err();
        assert!(matches!(err, KeyError::Write { .. }), "{err}");
        let kept = std::fs::read_to_string(dir.path().join(PRIVATE_KEY_FILE)).unwrap();
        assert_eq!(kept, "keep me");
    }

    #[tokio::test]
    async fn a_paseto_key_is_generated_private_and_then_reloaded_with_the_same_kid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/paseto.key");
        let first = load_or_generate_paseto(&path).await.unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_generate_paseto(&path).await.unwrap();
        assert_eq!(first.public_key().kid, again.public_key().kid);

        std::fs::write(&path, "not a key").unwrap();
        let Err(err) = load_or_generate_paseto(&path).await else {
            panic!("a garbled key file must not load");
        };
        assert!(err.to_string().contains("paseto.key"), "{err}");
    }
}
