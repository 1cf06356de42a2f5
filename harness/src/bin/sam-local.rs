//! `make sam-local`: every `events/*.json` through `sam local invoke` of the built
//! template, against a local Amazon Connect (the emulator, seeded with the demo contact
//! centre) and a local SQS (moto) holding one dead-letter queue per class. Each row of
//! the table is read from the emulator's journal and the dead-letter queues (the reply
//! only has to agree with them), and checked against the expected outcomes manifest.
//! Exits non-zero when any row differs, has no expectation, or an expectation no row.
//!
//! ```text
//! sam-local --template FILE --image IMAGE [--sam CMD] [--seed FILE] [--events DIR]
//!           [--expect FILE] [--param KEY=VALUE]... [--env-out FILE] [--logs]
//! ```
//!
//! The template's environment is overridden only where a local endpoint is named: the
//! Connect, SQS and DynamoDB endpoints, the dead-letter queue URLs and the watermark
//! table's local name. Everything else comes from
//! the template and its parameters (`--param`, passed as `--parameter-overrides`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use harness::report::{
    Collected, Expectations, Local, Row, event_files, print_rows, read_event_file, read_seed, row,
    seed_instances,
};
use harness::{ERROR_CLASSES, Moto, QueueSpec, kebab, workspace_root};
use serde_json::{Map, Value, json};

/// The function's logical id in template.yaml.
const FUNCTION: &str = "ConnectIdentitySyncFunction";

struct Args {
    template: PathBuf,
    image: String,
    sam: Vec<String>,
    seed: PathBuf,
    events: PathBuf,
    expect: PathBuf,
    params: Vec<String>,
    env_out: PathBuf,
    logs: bool,
}

fn usage() -> &'static str {
    "usage: sam-local --template FILE --image IMAGE [--sam CMD] [--seed FILE] [--events DIR] \
     [--expect FILE] [--param KEY=VALUE]... [--env-out FILE] [--logs]"
}

fn parse_args() -> Result<Args, String> {
    let root = workspace_root();
    let mut args = Args {
        template: root.join("target/sam/build/template.yaml"),
        image: String::new(),
        sam: vec![
            root.join(".venv/bin/python").display().to_string(),
            root.join("scripts/sam-hostnet").display().to_string(),
        ],
        seed: root.join("demo/contact-centre.json"),
        events: root.join("events"),
        expect: root.join("events/expected-outcomes.txt"),
        params: Vec::new(),
        env_out: root.join("target/sam/env-vars.json"),
        logs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--template" => args.template = PathBuf::from(value()?),
            "--image" => args.image = value()?,
            "--sam" => args.sam = value()?.split_whitespace().map(str::to_owned).collect(),
            "--seed" => args.seed = PathBuf::from(value()?),
            "--events" => args.events = PathBuf::from(value()?),
            "--expect" => args.expect = PathBuf::from(value()?),
            "--param" => args.params.push(value()?),
            "--env-out" => args.env_out = PathBuf::from(value()?),
            "--logs" => args.logs = true,
            "-h" | "--help" => return Err(usage().to_owned()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    if args.image.is_empty() || args.sam.is_empty() {
        return Err(usage().to_owned());
    }
    Ok(args)
}

/// What one `sam local invoke` gave back.
struct Invoked {
    /// The function's reply (or Lambda's error document), parsed.
    reply: Option<Value>,
    /// SAM's and the function's output, for when something went wrong.
    output: String,
}

/// `sam` with only what SAM itself needs in its environment.
fn sam_command(args: &Args) -> Result<tokio::process::Command, String> {
    let (program, first) = args.sam.split_first().ok_or("no sam command")?;
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(first);
    // SAM lets a shell variable override the template's variable of the same name (a
    // host's SSL_CERT_FILE would replace the image's bundle path), so SAM gets only what
    // it needs itself. Never a real account: a fixed region and dummy credentials, which
    // SAM hands to the container as Lambda would hand it the role's.
    cmd.env_clear();
    for keep in [
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "DOCKER_HOST",
        "DOCKER_CONFIG",
    ] {
        if let Some(v) = std::env::var_os(keep) {
            cmd.env(keep, v);
        }
    }
    cmd.env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "sam-local-dummy-secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("SAM_CLI_TELEMETRY", "0")
        .kill_on_drop(true);
    Ok(cmd)
}

/// The arguments every `sam local` command here shares: the built template in the
/// stand-in image, on the host's network, with the local endpoints' variables.
fn local_args(args: &Args, cmd: &mut tokio::process::Command) {
    cmd.arg("--template")
        .arg(&args.template)
        .args(["--invoke-image", &args.image])
        .args(["--skip-pull-image", "--docker-network", "host"])
        .arg("--env-vars")
        .arg(&args.env_out);
    if !args.params.is_empty() {
        cmd.arg("--parameter-overrides").args(&args.params);
    }
}

async fn sam_invoke(args: &Args, event: &std::path::Path) -> Result<Invoked, String> {
    let mut cmd = sam_command(args)?;
    cmd.args(["local", "invoke", FUNCTION])
        .arg("--event")
        .arg(event);
    local_args(args, &mut cmd);
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("cannot run sam: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // SAM prints the reply as the last line of stdout; the logs go to stderr.
    let reply = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str(l).ok());
    Ok(Invoked {
        reply,
        output: format!("{stderr}{stdout}"),
    })
}

/// The function in one warm container under `sam local start-lambda`, reused from one
/// invocation to the next as Lambda reuses a container: each `sam local invoke` starts
/// the arm64 bootstrap afresh under qemu (8-15 s), an invocation of a warm one does not.
struct Warm {
    sam: tokio::process::Child,
    port: u16,
    log: PathBuf,
}

impl Warm {
    async fn start(args: &Args) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let log = args.env_out.with_file_name("start-lambda.log");
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = file.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = sam_command(args)?;
        cmd.args(["local", "start-lambda"]);
        local_args(args, &mut cmd);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--warm-containers", "EAGER"])
            .stdout(file)
            .stderr(err);
        let mut sam = cmd.spawn().map_err(|e| format!("cannot run sam: {e}"))?;
        let until = Instant::now() + std::time::Duration::from_secs(180);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Self { sam, port, log });
            }
            let gone = sam.try_wait().map_err(|e| e.to_string())?;
            if gone.is_some() || Instant::now() > until {
                let output = std::fs::read_to_string(&log).unwrap_or_default();
                return Err(format!(
                    "sam local start-lambda did not listen on {port}:\n{output}"
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    async fn invoke(&self, event: &[u8]) -> Result<Invoked, String> {
        use http_body_util::BodyExt;
        let logged = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("sam local start-lambda: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("sam local start-lambda: {e}"))?;
        let driver = tokio::spawn(conn);
        let request = http::Request::post(format!("/2015-03-31/functions/{FUNCTION}/invocations"))
            .header(http::header::HOST, format!("127.0.0.1:{}", self.port))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
                event,
            )))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(180),
            sender.send_request(request),
        )
        .await
        .map_err(|_| "sam local start-lambda did not answer in 180 s".to_owned())?
        .map_err(|e| format!("sam local start-lambda: {e}"))?;
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("sam local start-lambda: {e}"))?
            .to_bytes();
        driver.abort();
        // The function's log lines reach SAM's output a moment after the reply.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let all = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(logged).unwrap_or(0).min(all.len());
        Ok(Invoked {
            reply: serde_json::from_slice(&body).ok(),
            output: String::from_utf8_lossy(&all[from..]).into_owned(),
        })
    }

    /// Stops SAM as Ctrl-C would, so that it removes its warm container.
    async fn stop(mut self) {
        if let Some(pid) = self.sam.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
            if tokio::time::timeout(std::time::Duration::from_secs(30), self.sam.wait())
                .await
                .is_ok()
            {
                return;
            }
        }
        let _ = self.sam.kill().await;
    }
}

fn reply_error(reply: Option<&Value>) -> Option<(String, String)> {
    let reply = reply?;
    let error_type = reply.get("errorType").and_then(Value::as_str)?;
    let message = reply
        .get("errorMessage")
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some((error_type.to_owned(), message.to_owned()))
}

/// The row of an EventBridge event, from the journal and the dead-letter queues; the
/// reply must agree.
fn eventbridge_row(
    local: &Local<'_>,
    file: &str,
    event: &Value,
    invoked: &Invoked,
    letters: &BTreeMap<String, String>,
    journal_before: usize,
) -> Row {
    let id = event.get("id").and_then(Value::as_str).unwrap_or("-");
    if let Some((error_type, message)) = reply_error(invoked.reply.as_ref()) {
        return row(
            file,
            id,
            &format!("invocation error: {message}"),
            &error_type,
            "(Lambda retries)",
        );
    }
    let Some(reply) = &invoked.reply else {
        return row(file, id, "no reply", "", "");
    };
    let said = |k: &str| reply.get(k).and_then(Value::as_str).unwrap_or_default();
    let (outcome, class) = if let Some(class) = letters.get(id) {
        ("dead_lettered", class.as_str())
    } else if local.updated_since(journal_before, local.user_of(&event.to_string()).as_deref()) {
        ("updated", "")
    } else {
        ("unchanged", "")
    };
    if said("outcome") != outcome || said("errorClass") != class {
        return row(
            file,
            id,
            &format!("reply {reply} but the journal and queues say {outcome} {class}"),
            class,
            "",
        );
    }
    let queue = if class.is_empty() {
        String::new()
    } else {
        local.queue_name_of(class)
    };
    row(file, id, outcome, class, &queue)
}

/// The rows of an SQS event, record by record: dead-lettered (the queues), handed back
/// (`batchItemFailures`), else updated or unchanged (the journal).
fn sqs_rows(
    local: &Local<'_>,
    file: &str,
    event: &Value,
    invoked: &Invoked,
    letters: &BTreeMap<String, String>,
    journal_before: usize,
) -> Vec<Row> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let error = reply_error(invoked.reply.as_ref());
    let failures: Option<Vec<String>> = invoked
        .reply
        .as_ref()
        .and_then(|r| r.get("batchItemFailures"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.get("itemIdentifier").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        });
    let mut rows = Vec::new();
    for (i, r) in records.iter().enumerate() {
        let id = r
            .get("messageId")
            .and_then(Value::as_str)
            .map_or_else(|| format!("record-{i}"), str::to_owned);
        let body = r.get("body").and_then(Value::as_str).unwrap_or_default();
        let row = if let Some((error_type, message)) = &error {
            row(
                file,
                &id,
                &format!("invocation error: {message}"),
                error_type,
                "(whole batch back to the queue)",
            )
        } else if let Some(class) = letters.get(&id) {
            row(
                file,
                &id,
                "dead_lettered",
                class,
                &local.queue_name_of(class),
            )
        } else if let Some(failures) = &failures {
            if failures.contains(&id) {
                row(file, &id, "handed_back", "", "(back to the source queue)")
            } else if local.updated_since(journal_before, local.user_of(body).as_deref()) {
                row(file, &id, "updated", "", "")
            } else {
                row(file, &id, "unchanged", "", "")
            }
        } else {
            row(file, &id, "no batch reply", "", "")
        };
        rows.push(row);
    }
    rows
}

async fn run(args: Args) -> Result<bool, String> {
    let expect = Expectations::load(&args.expect)?;
    let seed = read_seed(&args.seed)?;
    let files = event_files(&args.events)?;

    println!("starting moto (SQS) and the Connect emulator …");
    let moto = Moto::start().await.map_err(|e| e.to_string())?;
    let sqs = moto.sqs().await;
    let emulator = harness::connect_emulator::Emulator::builder()
        .log_requests(std::env::var_os("HARNESS_EMULATOR_LOG").is_some())
        .start("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    emulator
        .seed_json(seed.clone())
        .map_err(|e| format!("the emulator refused {}: {e:?}", args.seed.display()))?;
    let mut dlqs = BTreeMap::new();
    let mut env = Map::new();
    env.insert(
        "AWS_ENDPOINT_URL_CONNECT".into(),
        json!(emulator.endpoint_url()),
    );
    env.insert("AWS_ENDPOINT_URL_SQS".into(), json!(moto.endpoint()));
    // The template's watermark table, made in moto (which serves DynamoDB beside SQS)
    // under a local name: the guard refuses to apply anything unguarded without it.
    harness::Dynamo::new(&moto.endpoint())
        .await
        .create_watermark_table(harness::WATERMARK_TABLE)
        .await
        .map_err(|e| e.to_string())?;
    env.insert("AWS_ENDPOINT_URL_DYNAMODB".into(), json!(moto.endpoint()));
    env.insert("WATERMARK_TABLE".into(), json!(harness::WATERMARK_TABLE));
    for (class, var) in ERROR_CLASSES {
        let queue = sqs
            .create_queue(&QueueSpec::new(format!("dlq-{}", kebab(class))))
            .await
            .map_err(|e| e.to_string())?;
        env.insert(var.into(), json!(queue.url));
        dlqs.insert(class.to_owned(), queue);
    }
    if let Some(dir) = args.env_out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let env_vars = json!({ FUNCTION: env });
    std::fs::write(
        &args.env_out,
        serde_json::to_vec_pretty(&env_vars).unwrap_or_default(),
    )
    .map_err(|e| format!("{}: {e}", args.env_out.display()))?;
    println!(
        "  SQS {}   Connect {}\n  template {}   image {}\n  --env-vars {} (local endpoints only)\n",
        moto.endpoint(),
        emulator.endpoint_url(),
        args.template.display(),
        args.image,
        args.env_out.display()
    );

    let local = Local {
        sqs: &sqs,
        emulator: &emulator,
        dlqs: &dlqs,
        last_resort: None,
        instances: seed_instances(&seed),
    };
    let mut collected = Collected::new();
    let mut rows = Vec::new();
    let started = Instant::now();
    // The first event through `sam local invoke` (the command docs/deploy.md shows), the
    // others through one warm container under `sam local start-lambda`.
    let mut warm: Option<Warm> = None;
    for (i, path) in files.iter().enumerate() {
        let (file, raw) = read_event_file(path)?;
        let journal_before = emulator.journal().len();
        let one = Instant::now();
        let (invoked, how) = if i == 0 {
            (sam_invoke(&args, path).await?, "sam local invoke")
        } else {
            if warm.is_none() {
                warm = Some(Warm::start(&args).await?);
            }
            let w = warm.as_ref().ok_or("no warm container")?;
            (w.invoke(&raw).await?, "sam local start-lambda")
        };
        eprintln!("{how} {file}: {:.1} s", one.elapsed().as_secs_f64());
        if args.logs {
            eprintln!("{}", invoked.output);
        }
        let letters = local
            .collect(&mut collected)
            .await
            .map_err(|e| e.to_string())?;
        let new_rows = match serde_json::from_slice::<Value>(&raw) {
            Ok(event) if event.get("Records").is_some_and(Value::is_array) => {
                sqs_rows(&local, &file, &event, &invoked, &letters, journal_before)
            }
            Ok(event) if event.get("detail").is_some() => vec![eventbridge_row(
                &local,
                &file,
                &event,
                &invoked,
                &letters,
                journal_before,
            )],
            _ => {
                let (outcome, class) = match reply_error(invoked.reply.as_ref()) {
                    Some((error_type, _)) => ("invocation error".to_owned(), error_type),
                    None => (
                        invoked
                            .reply
                            .as_ref()
                            .map_or_else(|| "no reply".to_owned(), Value::to_string),
                        String::new(),
                    ),
                };
                vec![row(&file, "-", &outcome, &class, "")]
            }
        };
        if !args.logs && new_rows.iter().any(|r| r.outcome.contains("error")) {
            eprintln!("{}", invoked.output);
        }
        rows.extend(new_rows);
    }
    if let Some(w) = warm {
        w.stop().await;
    }
    println!(
        "{} event file(s) through sam local invoke (the first) and one warm container of sam local start-lambda (the others) in {:.1} s\n",
        files.len(),
        started.elapsed().as_secs_f64()
    );
    print_rows(&rows);
    local
        .print_summary(&mut collected, &BTreeMap::new())
        .await
        .map_err(|e| e.to_string())?;

    let problems = expect.check(&rows);
    if problems.is_empty() {
        println!(
            "\nevery row as {} expects ({} rows)",
            args.expect.display(),
            rows.len()
        );
    } else {
        eprintln!(
            "\n{} row(s) differ from {}:",
            problems.len(),
            args.expect.display()
        );
        for p in &problems {
            eprintln!("  - {p}");
        }
    }
    println!("\nstopping moto and the emulator");
    Ok(problems.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    tokio::select! {
        result = run(args) => match result {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("sam-local failed: {e}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopping everything");
            ExitCode::from(130)
        }
    }
}
