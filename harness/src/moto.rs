//! The moto server (`moto[server]` from PyPI) as a local Amazon SQS and Amazon
//! DynamoDB on a free loopback port.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::HarnessError;
use crate::sqs::Sqs;

/// A running moto server. Killed on drop.
pub struct Moto {
    child: Option<Child>,
    binary: PathBuf,
    port: u16,
    log: PathBuf,
}

impl Moto {
    /// Where the `moto_server` executable is: `MOTO_SERVER`, else
    /// `.venv/bin/moto_server` at the workspace root, else `moto_server` on `PATH`.
    #[must_use]
    pub fn locate() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("MOTO_SERVER") {
            return Some(PathBuf::from(p));
        }
        let venv = crate::workspace_root().join(".venv/bin/moto_server");
        if venv.is_file() {
            return Some(venv);
        }
        let path = std::env::var_os("PATH")?;
        std::env::split_paths(&path)
            .map(|dir| dir.join("moto_server"))
            .find(|p| p.is_file())
    }

    /// Starts moto on a free loopback port and waits until it answers.
    ///
    /// # Errors
    /// When no `moto_server` is found (run `make venv`) or it does not answer within 60 s.
    pub async fn start() -> Result<Self, HarnessError> {
        let binary = Self::locate().ok_or_else(|| {
            HarnessError::Start(
                "moto_server not found: set MOTO_SERVER, or run `make venv` to install moto[server] into .venv".into(),
            )
        })?;
        let mut last = None;
        for _ in 0..3 {
            let port = free_port()?;
            let mut moto = Self {
                child: None,
                binary: binary.clone(),
                port,
                log: std::env::temp_dir().join(format!("harness-moto-{port}.log")),
            };
            match moto.spawn_and_wait().await {
                Ok(()) => return Ok(moto),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| HarnessError::Start("moto did not start".into())))
    }

    /// The command that starts the server: `harness/moto/moto_server.py` (moto's server
    /// with two faults of its SQS backend worked around: requests that race each other
    /// and a send whose cost grows with the queue) under the Python beside
    /// `moto_server` (its `#!` line's), when both are there; else `moto_server` itself.
    fn command(&self) -> Command {
        let python = std::fs::read_to_string(&self.binary)
            .ok()
            .and_then(|text| {
                let line = text.lines().next()?.strip_prefix("#!")?.trim().to_owned();
                // A plain interpreter path (not `/usr/bin/env python3`, not a shell).
                (!line.contains(' ') && line.contains("python")).then(|| PathBuf::from(line))
            })
            .filter(|p| p.is_file());
        let script = crate::workspace_root().join("harness/moto/moto_server.py");
        if let (Some(python), true) = (python, script.is_file()) {
            let mut command = Command::new(python);
            command.arg(script);
            command
        } else {
            Command::new(&self.binary)
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), HarnessError> {
        let log = std::fs::File::create(&self.log)?;
        let child = self
            .command()
            .arg("-H")
            .arg("127.0.0.1")
            .arg("-p")
            .arg(self.port.to_string())
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                HarnessError::Start(format!("cannot start {}: {e}", self.binary.display()))
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                return Err(HarnessError::Start(format!(
                    "moto_server exited with {status}: {log}"
                )));
            }
            if answers(self.port).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop();
        Err(HarnessError::Start(
            "moto_server did not answer within 60 s".into(),
        ))
    }

    /// The endpoint URL (`http://127.0.0.1:PORT`).
    #[must_use]
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A DynamoDB client for this server (moto serves DynamoDB on the same port).
    pub async fn dynamo(&self) -> crate::dynamodb::Dynamo {
        crate::dynamodb::Dynamo::new(&self.endpoint()).await
    }

    /// An SQS client for this server.
    pub async fn sqs(&self) -> Sqs {
        Sqs::new(&self.endpoint()).await
    }

    /// Stops the server (its queues are lost); [`Moto::restart`] brings it back on the
    /// same port.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty.
    ///
    /// # Errors
    /// When it does not answer within 60 s.
    pub async fn restart(&mut self) -> Result<(), HarnessError> {
        self.stop();
        self.spawn_and_wait().await
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16, HarnessError> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

async fn answers(port: u16) -> bool {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream
            .write_all(b"GET /moto-api/ HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await?;
        let mut buf = [0_u8; 12];
        stream.read_exact(&mut buf).await?;
        Ok::<bool, std::io::Error>(buf.starts_with(b"HTTP/1."))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}
