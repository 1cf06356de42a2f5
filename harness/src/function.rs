//! The function under test as a child process, wired to a [`RuntimeApi`] the way
//! the Lambda service starts a custom runtime: the `AWS_LAMBDA_*` variables, a
//! region, static credentials and the SDK's per-service endpoint variables.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::{oneshot, watch};

use crate::HarnessError;
use crate::runtime_api::RuntimeApi;

/// What to start: the binary and its environment beyond the Lambda basics.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    binary: PathBuf,
    env: BTreeMap<String, String>,
    removed: Vec<String>,
    echo: bool,
}

impl FunctionConfig {
    /// The binary at `binary` (root tests pass `env!("CARGO_BIN_EXE_connect-identity-sync")`).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        Self {
            binary: binary.into(),
            env: BTreeMap::new(),
            removed: Vec::new(),
            echo: std::env::var_os("HARNESS_ECHO_LOGS").is_some(),
        }
    }

    /// Sets a variable (overrides the defaults below).
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.removed.retain(|k| k != &key);
        self.env.insert(key, value.into());
        self
    }

    /// Sets several variables.
    #[must_use]
    pub fn envs<K: Into<String>, V: Into<String>>(
        mut self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        for (k, v) in vars {
            self = self.env(k, v);
        }
        self
    }

    /// Leaves a variable out, defaults included.
    #[must_use]
    pub fn without(mut self, key: impl Into<String>) -> Self {
        let key = key.into();
        self.env.remove(&key);
        self.removed.push(key);
        self
    }

    /// Copies the function's output to this process's stderr as it comes
    /// (also switched on by `HARNESS_ECHO_LOGS`).
    #[must_use]
    pub fn echo_logs(mut self, echo: bool) -> Self {
        self.echo = echo;
        self
    }

    /// The binary this config starts.
    #[must_use]
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The variables left out.
    #[must_use]
    pub fn removed(&self) -> &[String] {
        &self.removed
    }

    /// The variables set on top of the defaults.
    #[must_use]
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.env
    }
}

/// The running function process. Killed on drop.
pub struct Function {
    pid: Option<u32>,
    logs: Arc<Mutex<Vec<String>>>,
    exit: watch::Receiver<Option<ExitStatus>>,
    kill: Option<oneshot::Sender<()>>,
}

impl Function {
    /// Starts the function against `runtime`, with `endpoints` as
    /// `AWS_ENDPOINT_URL_CONNECT` / `AWS_ENDPOINT_URL_SQS` (either may be empty).
    ///
    /// # Errors
    /// When the binary cannot be started.
    pub fn start(
        config: &FunctionConfig,
        runtime: &RuntimeApi,
        connect_endpoint: Option<&str>,
        sqs_endpoint: Option<&str>,
    ) -> Result<Self, HarnessError> {
        let mut vars: BTreeMap<String, String> = BTreeMap::new();
        let mut set = |k: &str, v: &str| {
            vars.insert(k.to_owned(), v.to_owned());
        };
        set("AWS_LAMBDA_RUNTIME_API", &runtime.endpoint());
        set("AWS_LAMBDA_FUNCTION_NAME", "connect-identity-sync");
        set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128");
        set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        set(
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]00000000000000000000000000000000",
        );
        set(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            "/aws/lambda/connect-identity-sync",
        );
        set("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023");
        set("AWS_REGION", "us-east-1");
        set("AWS_DEFAULT_REGION", "us-east-1");
        set("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE");
        set(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        );
        set("AWS_SESSION_TOKEN", "harness-session-token");
        // Keep the host's AWS profile files and instance metadata out of the run.
        set("AWS_CONFIG_FILE", "/nonexistent/aws-config");
        set(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/aws-credentials",
        );
        set("AWS_EC2_METADATA_DISABLED", "true");
        set("RUST_BACKTRACE", "1");
        if let Some(url) = connect_endpoint {
            set("AWS_ENDPOINT_URL_CONNECT", url);
        }
        if let Some(url) = sqs_endpoint {
            set("AWS_ENDPOINT_URL_SQS", url);
        }
        for (k, v) in &config.env {
            vars.insert(k.clone(), v.clone());
        }
        for k in &config.removed {
            vars.remove(k);
        }

        let mut command = Command::new(&config.binary);
        command
            .env_clear()
            .envs(&vars)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command.spawn().map_err(|e| {
            HarnessError::Start(format!("cannot start {}: {e}", config.binary.display()))
        })?;
        let pid = child.id();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(spawn_reader(out, Arc::clone(&logs), config.echo));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(spawn_reader(err, Arc::clone(&logs), config.echo));
        }
        runtime.clear_exited();
        let (exit_tx, exit_rx) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel::<()>();
        let runtime = runtime.clone();
        tokio::spawn(async move {
            tokio::select! {
                status = child.wait() => {
                    let status = status.ok();
                    // The exit is told only once the process's last lines are read, so
                    // that whoever waits for it sees everything it wrote (bounded, in
                    // case something else still holds the pipes).
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        for reader in readers {
                            let _ = reader.await;
                        }
                    })
                    .await;
                    let text = status.map_or_else(|| "unknown".to_owned(), |s| s.to_string());
                    runtime.mark_exited(text);
                    let _ = exit_tx.send(status);
                }
                _ = kill_rx => {
                    let _ = child.kill().await;
                }
            }
        });
        Ok(Self {
            pid,
            logs,
            exit: exit_rx,
            kill: Some(kill_tx),
        })
    }

    /// The process id.
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Everything the process wrote to stdout and stderr so far, one entry a line.
    #[must_use]
    pub fn log_lines(&self) -> Vec<String> {
        self.logs.lock().expect("log buffer").clone()
    }

    /// Everything the process wrote so far, as one text.
    #[must_use]
    pub fn logs(&self) -> String {
        self.log_lines().join("\n")
    }

    /// The logs once they hold `needle`, or as they are after `limit`. A line written
    /// just before a reply may still be on its way through the pipe when the reply is
    /// in: a test that looks for such a line waits for it here.
    pub async fn logs_once_containing(&self, needle: &str, limit: Duration) -> String {
        self.logs_once_holding(needle, 1, limit).await
    }

    /// The logs once at least `at_least` of their lines hold `needle`, or as they are
    /// after `limit` (the lines of the last replies may still be in the pipe).
    pub async fn logs_once_holding(
        &self,
        needle: &str,
        at_least: usize,
        limit: Duration,
    ) -> String {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let lines = self.log_lines();
            let found = lines.iter().filter(|l| l.contains(needle)).count();
            if found >= at_least || tokio::time::Instant::now() >= until {
                return lines.join("\n");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The log lines once at least `at_least` of them are JSON lines whose message is
    /// `message`, or as they are after `limit`: the lines an invocation writes just
    /// before its reply may still be on their way through the pipe when the reply is in.
    pub async fn log_lines_once(
        &self,
        message: &str,
        at_least: usize,
        limit: Duration,
    ) -> Vec<String> {
        let until = tokio::time::Instant::now() + limit;
        loop {
            let lines = self.log_lines();
            let found = crate::fixtures::log_messages(&lines, message).len();
            if found >= at_least || tokio::time::Instant::now() >= until {
                return lines;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The exit status, if the process has ended.
    #[must_use]
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Whether the process is still running.
    #[must_use]
    pub fn is_running(&self) -> bool {
        self.exit_status().is_none()
    }

    /// Waits up to `limit` for the process to end.
    pub async fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        let mut rx = self.exit.clone();
        let waited = tokio::time::timeout(limit, async {
            loop {
                if let Some(s) = *rx.borrow_and_update() {
                    return Some(s);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        waited.ok().flatten()
    }

    /// Stops the process.
    pub fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        // The watcher task kills the process; if the runtime is gone, the task's
        // `Child` is dropped with `kill_on_drop`, which kills it too.
        self.kill();
    }
}

fn spawn_reader<R>(
    stream: R,
    logs: Arc<Mutex<Vec<String>>>,
    echo: bool,
) -> tokio::task::JoinHandle<()>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if echo {
                eprintln!("[function] {line}");
            }
            logs.lock().expect("log buffer").push(line);
        }
    })
}
