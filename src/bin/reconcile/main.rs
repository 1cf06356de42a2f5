//! `connect-identity-sync-reconcile`: compares the identity provider's users (an
//! export) with Connect's and can queue the corrections for the function (SPEC §7).
//! Wiring only: arguments, SDK clients, the progress bar, the table and the report;
//! reading the file is `source`, reading Connect `connect`, the comparison `compare`,
//! the corrections `enqueue`.

mod compare;
mod connect;
mod enqueue;
mod source;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;
use connect_identity_sync::config;
use connect_identity_sync::domain::identity::InstanceId;
use connect_identity_sync::outbound::https;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use compare::{Tally, UserResult, Verdict};
use source::{Columns, Format, Preset, Reading};

/// Compares the identity provider's users with Amazon Connect's, and can queue the
/// corrections for connect-identity-sync.
///
/// Values are normalised as the function normalises them before they are compared
/// (names trimmed and in NFC, mobiles in E.164 with national numbers read in
/// DEFAULT_PHONE_REGION), so a difference of form is no difference. Prints counts
/// only; --report writes the result per user (ids and field names, never a value).
/// Exit status: 0 when every user found on both sides agrees, 1 when a field
/// differs, 2 when a user could not be compared or the run could not finish. AWS is
/// reached through the standard configuration (AWS_REGION, credentials,
/// AWS_ENDPOINT_URL_CONNECT, AWS_ENDPOINT_URL_SQS).
#[derive(Debug, Parser)]
#[command(name = "connect-identity-sync-reconcile", version)]
struct Args {
    /// The Connect instance (id or ARN).
    #[arg(long, value_name = "ID")]
    instance: String,
    /// The identity provider's users: a CSV export, JSON Lines of canonical
    /// documents, or a SCIM ListResponse.
    #[arg(long, value_name = "FILE")]
    users: PathBuf,
    /// The file's format; by default from its extension (.jsonl/.ndjson, .json for
    /// SCIM, anything else CSV).
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Column names of a usual CSV export: okta (login, firstName, lastName, email,
    /// secondEmail, mobilePhone) or entra (userPrincipalName, givenName, surname, mail,
    /// mobile). Without it, columns named as the fields (Username or UserId,
    /// FirstName, LastName, Email, SecondaryEmail, Mobile).
    #[arg(long, value_enum)]
    preset: Option<Preset>,
    /// CSV columns, over the preset's: FIELD=COLUMN,... with FIELD one of Username,
    /// UserId, FirstName, LastName, Email, SecondaryEmail, Mobile; FIELD= leaves a
    /// field uncompared. May be given more than once; a later mapping of a field wins.
    #[arg(long, value_name = "FIELD=COLUMN,...", value_parser = source::parse_columns)]
    columns: Vec<Columns>,
    /// When the export was taken (RFC 3339): the corrections' OccurredAt. Default: the
    /// file's modification time. With --enqueue, at most MAX_CLOCK_SKEW_SECONDS ahead of
    /// the clock, as the function allows.
    #[arg(long, value_name = "RFC3339", value_parser = rfc3339)]
    as_of: Option<DateTime<Utc>>,
    /// Sends one canonical document per user that differs to this queue (the
    /// function's source queue).
    #[arg(long, value_name = "QUEUE_URL")]
    enqueue: Option<String>,
    /// Writes the result per user as JSON to this file.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Connect requests per second at most (ListUsers and DescribeUser together,
    /// retries included). The default is the function's DescribeUser share; Connect's
    /// default quota for DescribeUser is 10/s for the whole account, so lower it while
    /// the function is busy.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 10.0, value_parser = rate)]
    rate: f64,
}

fn rate(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r >= 0.01 && *r <= 1000.0)
        .ok_or_else(|| "a number of requests per second from 0.01 to 1000".into())
}

fn rfc3339(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| "not an RFC 3339 time (e.g. 2026-12-01T08:00:00Z)".into())
}

/// The failure that ends a run before the comparison: exit status 2.
struct Stop(String);

impl<E: std::fmt::Display> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop(e.to_string())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => ExitCode::from(code),
        Err(Stop(why)) => {
            eprintln!("could not compare: {why}");
            ExitCode::from(2)
        }
    }
}

fn bar(len: Option<u64>, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

async fn run(args: Args) -> Result<u8, Stop> {
    let instance = InstanceId::parse(&args.instance)
        .map_err(|_| Stop("--instance is not a Connect instance id or ARN".into()))?;
    // Read as the function reads them, so that a value the function would refuse stops
    // the command too, naming the variable.
    let env = |k: &str| std::env::var(k).ok();
    let region = config::phone_region(env)?;
    let max_skew = config::max_clock_skew(env)?;
    let as_of = match args.as_of {
        Some(t) => t,
        None => modified(&args.users)?,
    };
    if args.enqueue.is_some() && as_of > Utc::now() + max_skew {
        return Err(Stop(format!(
            "--as-of is more than MAX_CLOCK_SKEW_SECONDS ({} s) ahead of the clock: the function would refuse every correction dated so",
            max_skew.num_seconds()
        )));
    }
    let columns: Vec<_> = args
        .columns
        .iter()
        .flat_map(|c| c.0.iter().cloned())
        .collect();
    let format = args.format.unwrap_or_else(|| {
        if args.preset.is_some() || !columns.is_empty() {
            Format::Csv
        } else {
            Format::of(&args.users)
        }
    });
    if args.format.is_some_and(|f| f != Format::Csv)
        && (args.preset.is_some() || !columns.is_empty())
    {
        return Err(Stop("--preset and --columns apply to a CSV file".into()));
    }
    let reading = Reading {
        format,
        preset: args.preset,
        columns,
        instance: instance.clone(),
    };
    let export = source::read(&args.users, &reading).map_err(Stop)?;
    if region.is_none() {
        eprintln!(
            "DEFAULT_PHONE_REGION is not set: a national mobile in the file cannot be compared (as the function would refuse it)"
        );
    }
    if !export.unmapped.is_empty() {
        let names: Vec<&str> = export.unmapped.iter().map(|f| f.as_str()).collect();
        eprintln!("not compared (no column in the file): {}", names.join(", "));
    }

    let shared = sdk_config().await;
    let connect_config = aws_sdk_connect::config::Builder::from(&shared)
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        )
        .build();
    let reader = connect::Reader::new(
        aws_sdk_connect::Client::from_conf(connect_config),
        args.rate,
    );
    let started = Instant::now();

    let listing = bar(None, "{spinner} listing Connect's users: {pos} [{elapsed}]");
    let listed = reader
        .list(&instance, |n| listing.set_position(n as u64))
        .await
        .map_err(|e| {
            Stop(format!(
                "Connect's users could not be listed: {}",
                e.failure.message
            ))
        })?;
    listing.finish_and_clear();

    let matching = compare::match_users(&export.users, &listed);
    let reading_bar = bar(
        Some(matching.pairs.len() as u64),
        "{bar:40} {pos}/{len} users read from Connect [{elapsed}, {eta} left]",
    );
    // Reads in flight: enough to keep to the rate at half a second per reply, and no
    // more, since each waits on a reserved token and a stalled process wakes them together.
    let concurrency = ((args.rate / 2.0).ceil() as usize).clamp(1, 32);
    let mut compared: Vec<UserResult> = futures::stream::iter(&matching.pairs)
        .map(|(i, id)| {
            let reader = &reader;
            let instance = &instance;
            let user = &export.users[*i];
            let reading_bar = &reading_bar;
            async move {
                let result = match reader.describe(instance, id).await {
                    Ok(record) => compare::compare(user, id, &record.info, region),
                    Err(e) => compare::unread(user, id, e.failure.message),
                };
                reading_bar.inc(1);
                result
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    reading_bar.finish_and_clear();
    let elapsed = started.elapsed();
    let calls = reader.calls();

    compared.extend(matching.settled);
    let mut results = compared;
    results.sort_by_key(order);
    let tally = Tally::of(&results);

    println!(
        "Reconcile of instance {} with {} ({} user(s) in the file, {} in Connect)\n",
        instance,
        args.users.file_name().map_or_else(
            || args.users.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        ),
        export.users.len(),
        listed.len()
    );
    print!("{tally}");
    println!(
        "\nConnect calls: {} ListUsers, {} DescribeUser ({} throttled) in {:.1} s, at most {}/s",
        calls.list_users,
        calls.describe_user,
        calls.throttled,
        elapsed.as_secs_f64(),
        args.rate
    );
    let differing: Vec<&UserResult> = results.iter().filter(|r| !r.differing.is_empty()).collect();
    const SHOWN: usize = 20;
    for r in differing.iter().take(SHOWN) {
        let fields: Vec<&str> = r.differing.iter().map(|f| f.as_str()).collect();
        println!(
            "differs: {} ({})",
            r.user_id.as_deref().unwrap_or("-"),
            fields.join(", ")
        );
    }
    if differing.len() > SHOWN {
        println!("… and {} more (see --report)", differing.len() - SHOWN);
    }
    for r in &results {
        if let Verdict::CouldNotCompare(why) | Verdict::Unreadable(why) = &r.verdict {
            let at = r.place.map_or_else(String::new, |p| format!("{p}: "));
            let id = r
                .user_id
                .as_deref()
                .map_or_else(String::new, |i| format!("{i}: "));
            eprintln!("not compared: {at}{id}{why}");
        }
    }

    let mut code = tally.exit_code();
    let mut enqueued = serde_json::Value::Null;
    if let Some(queue) = &args.enqueue {
        let documents: Vec<enqueue::Document> = results
            .iter()
            .filter(|r| !r.correction.is_empty())
            .filter_map(|r| {
                r.user_id
                    .as_deref()
                    .map(|id| enqueue::document(&instance, id, &r.correction, as_of))
            })
            .collect();
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let sent = enqueue::send(&sqs, queue, &documents).await;
        println!(
            "\nqueued {} correction(s) with OccurredAt {} to {queue}",
            sent.sent.len(),
            as_of.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
        for (user, why) in &sent.failed {
            eprintln!("not queued: {user}: {why}");
        }
        if !sent.failed.is_empty() {
            code = 2;
        }
        enqueued = json!({
            "queue": queue,
            "sent": sent.sent,
            "failed": sent.failed.iter().map(|(u, why)| json!({"userId": u, "reason": why})).collect::<Vec<_>>(),
        });
    }

    if let Some(path) = &args.report {
        let report = json!({
            "instance": instance.as_str(),
            "asOf": as_of.to_rfc3339_opts(SecondsFormat::Millis, true),
            "exitCode": code,
            "counts": tally.to_json(),
            "connectCalls": {"ListUsers": calls.list_users, "DescribeUser": calls.describe_user, "throttled": calls.throttled},
            "enqueued": enqueued,
            "users": results.iter().map(UserResult::to_json).collect::<Vec<_>>(),
        });
        let text = serde_json::to_string_pretty(&report).expect("a report is JSON");
        std::fs::write(path, text + "\n")
            .map_err(|e| Stop(format!("cannot write the report {}: {e}", path.display())))?;
    }
    Ok(code)
}

/// File rows first in file order, then Connect's users alone by id.
fn order(r: &UserResult) -> (u8, u64, String) {
    match r.place {
        Some(source::Place::Line(n) | source::Place::Resource(n)) => (0, n, String::new()),
        None => (1, 0, r.user_id.clone().unwrap_or_default()),
    }
}

fn modified(path: &Path) -> Result<DateTime<Utc>, Stop> {
    let time = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| Stop(format!("cannot read {}: {e}", path.display())))?;
    Ok(DateTime::<Utc>::from(time))
}

/// The SDK's standard configuration, over the HTTPS client the function uses: Amazon
/// Trust Services' roots, or with SSL_CERT_FILE the SDK's default client, which
/// trusts that file.
async fn sdk_config() -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    let loader = if std::env::var_os("SSL_CERT_FILE").is_none() {
        loader.http_client(https::amazon_roots_client())
    } else {
        loader
    };
    loader.load().await
}
