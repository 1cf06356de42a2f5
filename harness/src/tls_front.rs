//! A TLS front before a local plain-HTTP server (`scripts/tls-front.py`), with a CA
//! and a `localhost` certificate made with `openssl` for the run: the function reaches
//! an emulator over HTTPS, as it reaches AWS, and `SSL_CERT_FILE` can name that CA.

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A running TLS front; stopped when dropped.
pub struct TlsFront {
    child: std::process::Child,
    /// `https://localhost:PORT`.
    pub endpoint: String,
    /// A PEM file holding the front's CA alone, for the function's `SSL_CERT_FILE`: one
    /// certificate, as few as the function's compiled-in roots.
    pub bundle: std::path::PathBuf,
    dir: std::path::PathBuf,
}

impl TlsFront {
    /// Starts a front that terminates TLS for `emulator` (an `http://` URL), with a
    /// certificate for `localhost` signed by a CA made here, for two days.
    ///
    /// # Errors
    /// When `openssl` or `python3` cannot be run, or the front does not start.
    pub fn start(emulator: &str) -> Result<Self, String> {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let dir = std::env::temp_dir().join(format!(
            "tls-front-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let run = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .map_err(|e| format!("openssl: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend([
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=tls-front-ca",
        ]);
        run(&ca)?;
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend([
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&csr)?;
        std::fs::write(
            dir.join("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| e.to_string())?;
        run(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ])?;
        let bundle_path = dir.join("ca.pem");

        let target = emulator.trim_start_matches("http://");
        let script = crate::workspace_root().join("scripts/tls-front.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--cert", "leaf.pem", "--key", "leaf.key", "--to", target])
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("python3 tls-front.py: {e}"))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            std::io::BufReader::new(out)
                .read_line(&mut line)
                .map_err(|e| e.to_string())?;
        }
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            let _ = child.kill();
            return Err(format!("tls-front did not start: {line:?}"));
        };
        let port = addr.rsplit(':').next().unwrap_or_default().to_owned();
        Ok(Self {
            child,
            endpoint: format!("https://localhost:{port}"),
            bundle: bundle_path,
            dir,
        })
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
