//! Certificates for the TLS tests, made with the `openssl` command: a CA, a
//! server certificate it signed for 127.0.0.1 and localhost, a client
//! certificate it signed, and a second CA that signed nothing of these.

use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Certs {
    pub dir: tempfile::TempDir,
}

impl Certs {
    /// Made in a fresh directory; `None` (after `missing`) without `openssl`.
    pub fn make() -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let certs = Self { dir };
        match certs.generate() {
            Ok(()) => Some(certs),
            Err(why) => orderly_testkit::missing("openssl", why),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed neither.
    pub fn other_ca(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    fn generate(&self) -> Result<(), String> {
        self.self_signed("ca", "orderly test CA")?;
        self.self_signed("other-ca", "another test CA")?;
        let san = self.path("server.ext");
        std::fs::write(
            &san,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        self.signed("server", "127.0.0.1", &san)?;
        let client = self.path("client.ext");
        std::fs::write(&client, "extendedKeyUsage=clientAuth\n").map_err(|e| e.to_string())?;
        // PostgreSQL maps a client certificate's CN to the user.
        self.signed("client", "postgres", &client)
    }

    fn self_signed(&self, name: &str, cn: &str) -> Result<(), String> {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.pem"),
                "-subj",
                &format!("/CN={cn}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        )
    }

    fn signed(&self, name: &str, cn: &str, extensions: &Path) -> Result<(), String> {
        openssl(
            self.dir.path(),
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        )?;
        openssl(
            self.dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-days",
                "2",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-extfile",
                &extensions.to_string_lossy(),
                "-out",
                &format!("{name}.pem"),
            ],
        )
    }
}

fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
