//! `make demo`: the real function binary against a local Amazon Connect (the
//! emulator, seeded with a demo contact centre) and a local SQS (moto). Every
//! `events/*.json` goes through the Lambda Runtime API — EventBridge events as
//! direct invocations, SQS events through a real queue and the event source
//! mapping — and the demo prints one row per event or record, then what each
//! dead-letter queue holds. It ends by fixing the cause of one dead letter and moving it
//! back with `connect-identity-sync-redrive` (beside the function binary), and shows it
//! applied; then it compares the identity provider's export (`idp-export.csv` beside the
//! seed) with Connect using `connect-identity-sync-reconcile`, queues the corrections,
//! shows them applied and the second comparison in step; last, an Entra-style round trip
//! through the SCIM endpoint (`connect-identity-sync-scim`, beside the function binary): a
//! PATCH, the queued change applied by the function, the new value read back through the
//! endpoint. It stops everything it started.
//!
//! ```text
//! demo [--function PATH] [--seed FILE] [--events DIR] [--env KEY=VALUE]... [--logs]
//! ```
//!
//! The function defaults to the `connect-identity-sync` beside this binary: cargo
//! builds both into one directory of its target directory, wherever that is
//! (`CARGO_TARGET_DIR`, a cargo config's `build.target-dir`, or `target/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use harness::connect_emulator::Operation;
use harness::report::{
    Collected, Local, Row, event_files, print_rows, read_event_file, read_seed, row, seed_instances,
};
use harness::{Attribute, Invocation, Outgoing, Stack, StackConfig, workspace_root};
use serde_json::{Value, json};

struct Args {
    function: PathBuf,
    seed: PathBuf,
    events: PathBuf,
    env: Vec<(String, String)>,
    logs: bool,
}

fn usage() -> &'static str {
    "usage: demo [--function PATH] [--seed FILE] [--events DIR] [--env KEY=VALUE]... [--logs]"
}

/// `name` in the directory this binary was built into (the same profile's directory of
/// cargo's target directory), else under `target/debug` of the workspace.
fn beside_this_binary(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(name)))
        .unwrap_or_else(|| workspace_root().join("target/debug").join(name))
}

fn parse_args() -> Result<Args, String> {
    let root = workspace_root();
    let mut args = Args {
        function: beside_this_binary("connect-identity-sync"),
        seed: root.join("demo/contact-centre.json"),
        events: root.join("events"),
        env: Vec::new(),
        logs: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .ok_or_else(|| format!("{arg} needs a value\n{}", usage()))
        };
        match arg.as_str() {
            "--function" => args.function = PathBuf::from(value()?),
            "--seed" => args.seed = PathBuf::from(value()?),
            "--events" => args.events = PathBuf::from(value()?),
            "--env" => {
                let kv = value()?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| format!("--env takes KEY=VALUE, got {kv}"))?;
                args.env.push((k.to_owned(), v.to_owned()));
            }
            "--logs" => args.logs = true,
            "-h" | "--help" => return Err(usage().to_owned()),
            other => return Err(format!("unknown argument {other}\n{}", usage())),
        }
    }
    Ok(args)
}

fn demo_config(args: &Args, seed: &Value) -> StackConfig {
    let instances = seed_instances(seed);
    let mut config = StackConfig::new(&args.function)
        .seed(seed.clone())
        .visibility_timeout(1)
        .source_max_receive_count(6)
        .echo_logs(args.logs)
        .env("EMAIL_DOMAIN_ALLOWLIST", "example.com")
        .env("PROTECTED_SECURITY_PROFILE_IDS", "sp-admin")
        .env(
            "TRUSTED_SOURCES",
            "com.example.idp,com.example.scim,com.example.hr",
        )
        .env("DEFAULT_PHONE_REGION", "US")
        .env("MAX_RECEIVE_COUNT", "3")
        .env("AWS_LAMBDA_LOG_LEVEL", "info")
        .watermarks();
    if let Some(first) = instances.first() {
        config = config
            .env("DEFAULT_INSTANCE_ID", first)
            .env("ALLOWED_INSTANCE_IDS", instances.join(","));
    }
    // Settings of the demo contact centre, if it comes with any.
    let extra = args.seed.with_file_name("function.env");
    if let Ok(text) = std::fs::read_to_string(extra) {
        for line in text.lines().map(str::trim) {
            if let Some((k, v)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
                config = config.env(k.trim(), v.trim());
            }
        }
    }
    for (k, v) in &args.env {
        config = config.env(k, v);
    }
    config
}

async fn run_eventbridge(stack: &Stack, local: &Local<'_>, file: &str, event: &Value) -> Row {
    let id = event.get("id").and_then(Value::as_str).unwrap_or("-");
    match stack.invoke(event).await {
        Ok(Invocation::Response(reply)) => {
            let outcome = reply
                .get("outcome")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned();
            let class = reply
                .get("errorClass")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let queue = if class.is_empty() {
                String::new()
            } else {
                local.queue_name_of(&class)
            };
            row(file, id, &outcome, &class, &queue)
        }
        Ok(Invocation::Error {
            error_type,
            error_message,
            ..
        }) => row(
            file,
            id,
            &format!("invocation error: {error_message}"),
            &error_type,
            "(Lambda retries)",
        ),
        Err(e) => row(file, id, &format!("no reply: {e}"), "", ""),
    }
}

async fn run_sqs(
    stack: &Stack,
    local: &Local<'_>,
    file: &str,
    event: &Value,
    collected: &mut Collected,
    origins: &mut BTreeMap<String, String>,
) -> Result<Vec<Row>, harness::HarnessError> {
    let records = event
        .get("Records")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let fifo = records.iter().any(|r| {
        r.get("eventSourceARN")
            .and_then(Value::as_str)
            .is_some_and(|a| a.ends_with(".fifo"))
    });
    let queue = if fifo {
        &stack.fifo_source
    } else {
        &stack.source
    };
    // Send each record's body as a message; remember which record it was.
    let mut sent: Vec<(String, String, String)> = Vec::new(); // (new id, original id, body)
    for (i, r) in records.iter().enumerate() {
        let original = r
            .get("messageId")
            .and_then(Value::as_str)
            .map_or_else(|| format!("record {i}"), str::to_owned);
        let body = r
            .get("body")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut message = Outgoing::new(body.clone());
        if let Some(attrs) = r.get("messageAttributes").and_then(Value::as_object) {
            for (name, a) in attrs {
                let data_type = a
                    .get("dataType")
                    .and_then(Value::as_str)
                    .unwrap_or("String");
                if let Some(v) = a.get("stringValue").and_then(Value::as_str) {
                    let mut attr = Attribute::string(v);
                    attr.data_type = data_type.to_owned();
                    message = message.attribute(name, attr);
                }
            }
        }
        if fifo {
            let group = r
                .pointer("/attributes/MessageGroupId")
                .and_then(Value::as_str)
                .unwrap_or("demo");
            message = message.fifo(group, format!("{original}-{i}"));
        }
        let id = stack.sqs.send(&queue.url, &message).await?;
        origins.insert(id.clone(), format!("{file} record {original}"));
        sent.push((id, original, body));
    }
    let journal_before = stack.emulator.journal().len();
    let mapping = if fifo {
        stack.fifo_mapping()
    } else {
        stack.mapping()
    };
    let report = mapping.run(Duration::from_secs(60)).await?;
    let letters = local.collect(collected).await?;
    let handed_back = report.handed_back();
    let deleted = report.deleted();
    let mut rows = Vec::new();
    for (id, original, body) in &sent {
        let retries = handed_back.get(id).map_or(0, Vec::len);
        let note = if retries > 0 {
            format!(" after {retries} redelivery(ies)")
        } else {
            String::new()
        };
        if let Some(class) = letters.get(id) {
            rows.push(row(
                file,
                original,
                &format!("dead_lettered{note}"),
                class,
                &local.queue_name_of(class),
            ));
        } else if deleted.contains(id) {
            let user = local.user_of(body);
            let updated = local.updated_since(journal_before, user.as_deref());
            let outcome = if updated { "updated" } else { "unchanged" };
            rows.push(row(file, original, &format!("{outcome}{note}"), "", ""));
        } else {
            rows.push(row(
                file,
                original,
                "still in the source queue",
                "",
                &queue.name,
            ));
        }
    }
    Ok(rows)
}

async fn demo(args: Args) -> Result<(), String> {
    if !args.function.is_file() {
        return Err(format!(
            "{} does not exist: build it first (`make demo` does)",
            args.function.display()
        ));
    }
    let seed = read_seed(&args.seed)?;
    let files = event_files(&args.events)?;

    println!(
        "starting moto (SQS), the Connect emulator and {} …",
        args.function.display()
    );
    let stack = demo_config(&args, &seed)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "  SQS {}   Connect {}   Runtime API {}\n",
        stack.moto.endpoint(),
        stack.emulator.endpoint_url(),
        stack.runtime.endpoint()
    );

    let local = Local {
        sqs: &stack.sqs,
        emulator: &stack.emulator,
        dlqs: &stack.dlqs,
        last_resort: Some(&stack.source_dlq),
        instances: seed_instances(&seed),
    };
    let mut collected = Collected::new();
    // SQS message id → the file and record it was sent for.
    let mut origins = BTreeMap::new();
    let mut rows = Vec::new();
    for path in &files {
        let (file, raw) = read_event_file(path)?;
        match serde_json::from_slice::<Value>(&raw) {
            Ok(event) if event.get("Records").is_some_and(Value::is_array) => {
                let sqs_rows =
                    run_sqs(&stack, &local, &file, &event, &mut collected, &mut origins).await;
                rows.extend(sqs_rows.map_err(|e| e.to_string())?);
            }
            Ok(event) if event.get("detail").is_some() => {
                rows.push(run_eventbridge(&stack, &local, &file, &event).await);
                local
                    .collect(&mut collected)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            _ => {
                // Anything else goes in as it is: the function answers MalformedEvent.
                let reply = stack.invoke_raw(&raw).await;
                let (outcome, class) = match reply {
                    Ok(Invocation::Error { error_type, .. }) => {
                        ("invocation error".to_owned(), error_type)
                    }
                    Ok(Invocation::Response(v)) => (v.to_string(), String::new()),
                    Err(e) => (format!("no reply: {e}"), String::new()),
                };
                rows.push(row(&file, "-", &outcome, &class, ""));
            }
        }
        if !stack.function.is_running() {
            return Err(format!(
                "the function process ended:\n{}",
                stack.function.logs()
            ));
        }
    }

    print_rows(&rows);
    local
        .print_summary(&mut collected, &origins)
        .await
        .map_err(|e| e.to_string())?;
    drop(local);

    let redrive = args
        .function
        .with_file_name("connect-identity-sync-redrive");
    match seed_instances(&seed).first() {
        Some(instance) if redrive.is_file() => redrive_act(&stack, &redrive, instance).await?,
        _ => println!("\n(no redrive shown: build {} first)", redrive.display()),
    }
    let reconcile = args
        .function
        .with_file_name("connect-identity-sync-reconcile");
    let export = args.seed.with_file_name("idp-export.csv");
    match seed_instances(&seed).first() {
        Some(instance) if reconcile.is_file() && export.is_file() => {
            reconcile_act(&stack, &reconcile, &export, instance).await?;
        }
        _ => println!(
            "\n(no reconcile shown: build {} and provide {})",
            reconcile.display(),
            export.display()
        ),
    }
    let scim = args.function.with_file_name("connect-identity-sync-scim");
    if scim.is_file() {
        harness::scim::demo_round_trip(&stack, &scim, "tnguyen").await?;
    } else {
        println!(
            "\n(no SCIM round trip shown: build {} first)",
            scim.display()
        );
    }
    println!("\nstopping moto, the emulator and the function");
    drop(stack);
    Ok(())
}

/// A change for an agent who does not exist yet is dead-lettered; once the agent exists,
/// the redrive command moves it back to the source queue and the function applies it.
async fn redrive_act(stack: &Stack, redrive: &Path, instance: &str) -> Result<(), String> {
    const USER: &str = "u-nhaddad";
    let err = |e: harness::HarnessError| e.to_string();
    println!("\nRedrive: a change for an agent who does not exist yet");
    let body = json!({
        "UserId": USER,
        "IdentityInfo": {"LastName": "Haddad-Rahman"},
        "EventId": "hr-9001",
    })
    .to_string();
    stack
        .sqs
        .send_body(&stack.source.url, &body)
        .await
        .map_err(err)?;
    stack
        .mapping()
        .run(Duration::from_secs(60))
        .await
        .map_err(err)?;
    let dlq = stack.dlq("ResourceNotFoundException");
    let held = stack.sqs.total_depth(&dlq.url).await.map_err(err)?;
    println!(
        "  1. sent {body}\n     -> dead-lettered: {} holds {held} message(s)",
        dlq.name
    );

    stack
        .emulator
        .seed_json(json!({"users": [{
            "instanceId": instance, "id": USER, "username": "nhaddad",
            "identityInfo": {"FirstName": "Noor", "LastName": "Haddad", "Email": "noor.haddad@example.com"},
            "securityProfileIds": ["sp-agent"],
        }]}))
        .map_err(|e| format!("{e:?}"))?;
    println!("  2. fixed: the agent {USER} now exists in Connect");

    let args = [
        "--from",
        dlq.url.as_str(),
        "--to",
        stack.source.url.as_str(),
        "--class",
        "ResourceNotFoundException",
    ];
    println!("  3. $ connect-identity-sync-redrive {}", args.join(" "));
    let out = tokio::process::Command::new(redrive)
        .args(args)
        .env("AWS_ENDPOINT_URL_SQS", stack.moto.endpoint())
        .env("AWS_REGION", harness::sqs::REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", redrive.display()))?;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("       {line}");
    }
    if !out.status.success() {
        return Err(format!(
            "the redrive failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }

    stack
        .mapping()
        .run(Duration::from_secs(60))
        .await
        .map_err(err)?;
    let updates = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .into_iter()
        .filter(|c| c.user_id.as_deref() == Some(USER) && c.status == 200)
        .count();
    let last_name = stack
        .emulator
        .user(instance, USER)
        .and_then(|u| u.identity_info.last_name)
        .unwrap_or_default();
    let left = stack.sqs.total_depth(&dlq.url).await.map_err(err)?;
    println!(
        "  4. applied: {updates} UpdateUserIdentityInfo call(s) for {USER}, LastName is now {last_name}; {} holds {left} message(s)",
        dlq.name
    );
    if updates != 1 {
        return Err(format!(
            "the redriven change was not applied:\n{}",
            stack.function.logs()
        ));
    }
    Ok(())
}

/// Runs `connect-identity-sync-reconcile` against the stack; prints its output indented.
async fn run_reconcile(
    stack: &Stack,
    reconcile: &Path,
    args: &[&str],
) -> Result<(i32, Vec<String>), String> {
    let out = tokio::process::Command::new(reconcile)
        .args(args)
        .env("AWS_ENDPOINT_URL_CONNECT", stack.emulator.endpoint_url())
        .env("AWS_ENDPOINT_URL_SQS", stack.moto.endpoint())
        .env("AWS_REGION", harness::sqs::REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .env("DEFAULT_PHONE_REGION", "US")
        .env_remove("AWS_PROFILE")
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", reconcile.display()))?;
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::to_owned)
        .collect();
    Ok((out.status.code().unwrap_or(-1), lines))
}

/// The identity provider's export (an Okta CSV in the repository) against the demo
/// contact centre as the events left it: the table, the corrections queued and applied
/// by the function, then a second run in step. The export is copied first, as if just
/// downloaded: its modification time is the corrections' `OccurredAt`.
async fn reconcile_act(
    stack: &Stack,
    reconcile: &Path,
    export: &Path,
    instance: &str,
) -> Result<(), String> {
    let err = |e: harness::HarnessError| e.to_string();
    let dir =
        std::env::temp_dir().join(format!("connect-identity-sync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let copy = dir.join("idp-export.csv");
    std::fs::copy(export, &copy).map_err(|e| format!("cannot copy {}: {e}", export.display()))?;
    let users = copy.to_string_lossy().into_owned();

    println!("\nReconcile: the identity provider's export against Connect");
    let args = [
        "--instance",
        instance,
        "--users",
        users.as_str(),
        "--preset",
        "okta",
        "--enqueue",
        stack.source.url.as_str(),
    ];
    println!(
        "  1. $ connect-identity-sync-reconcile --instance {instance} --users {} --preset okta --enqueue {}",
        export.display(),
        stack.source.name
    );
    let updates_before = stack
        .emulator
        .calls(Operation::UpdateUserIdentityInfo)
        .len();
    let (code, lines) = run_reconcile(stack, reconcile, &args).await?;
    for line in &lines {
        println!("       {line}");
    }
    println!("     -> exit status {code} (1: a field differs)");
    if code != 1 {
        return Err(format!("the reconcile ended with {code}, not 1"));
    }

    let report = stack
        .mapping()
        .run(Duration::from_secs(60))
        .await
        .map_err(err)?;
    let mut updated: Vec<String> = stack.emulator.calls(Operation::UpdateUserIdentityInfo)
        [updates_before..]
        .iter()
        .filter(|c| c.status == 200)
        .filter_map(|c| c.user_id.clone())
        .collect();
    updated.sort();
    let mut letters = 0;
    for queue in stack.dlqs.values() {
        letters += stack.sqs.total_depth(&queue.url).await.map_err(err)?;
    }
    println!(
        "  2. the function took {} correction(s) from {}: {} UpdateUserIdentityInfo call(s) ({})",
        report.deleted().len(),
        stack.source.name,
        updated.len(),
        updated.join(", ")
    );

    let args = [
        "--instance",
        instance,
        "--users",
        users.as_str(),
        "--preset",
        "okta",
    ];
    let (code, lines) = run_reconcile(stack, reconcile, &args).await?;
    let shown: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("in both") || l.contains("agree") || l.starts_with("  differ"))
        .collect();
    println!("  3. $ connect-identity-sync-reconcile (again, without --enqueue)");
    for line in shown {
        println!("       {line}");
    }
    println!("     -> exit status {code}: in step");
    let _ = std::fs::remove_dir_all(&dir);
    if code != 0 {
        return Err(format!(
            "the second reconcile ended with {code}; {letters} message(s) in the dead-letter queues:\n{}",
            lines.join("\n")
        ));
    }
    Ok(())
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
        result = demo(args) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("demo failed: {e}");
                ExitCode::FAILURE
            }
        },
        _ = tokio::signal::ctrl_c() => {
            // Dropping the demo future stops moto and the function.
            eprintln!("interrupted: stopping everything");
            ExitCode::from(130)
        }
    }
}
