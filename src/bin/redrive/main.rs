//! `connect-identity-sync-redrive`: moves dead letters back to a queue once their cause
//! is fixed. Wiring only: arguments, the SQS client, the progress bar, the table.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use connect_identity_sync::domain::error::ErrorClass;
mod moves;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use moves::{Options, parse_class};

/// Moves dead letters of connect-identity-sync back to a queue, byte for byte.
///
/// Each selected message is sent to --to with its attributes (OccurredAt and EventId keep
/// a replayed change's original time and id, so the staleness guard never takes it for
/// newer than changes applied since; a message without OccurredAt gets its
/// SentTimestamp) and deleted from --from only after the send succeeded; messages of other classes stay in --from, visible again at the end. Prints
/// one row per class (seen, moved, left). Exit status: 0 when every selected message was
/// moved, 1 when one could not be, 2 on a usage error. SQS is reached through the
/// standard AWS configuration (AWS_REGION, credentials, AWS_ENDPOINT_URL_SQS).
#[derive(Debug, Parser)]
#[command(name = "connect-identity-sync-redrive", version)]
struct Args {
    /// The dead-letter queue to move messages from.
    #[arg(long, value_name = "QUEUE_URL")]
    from: String,
    /// The queue to move them to (usually the function's source queue).
    #[arg(long, value_name = "QUEUE_URL")]
    to: String,
    /// Moves only messages of this failure class (repeatable); without it, every message.
    #[arg(long = "class", value_name = "ErrorClass", value_parser = class)]
    classes: Vec<ErrorClass>,
    /// Moves at most N messages.
    #[arg(long, value_name = "N")]
    max: Option<u64>,
    /// Counts what would move; sends and deletes nothing.
    #[arg(long)]
    dry_run: bool,
    /// Messages sent per second at most. Each moved message can cost one
    /// UpdateUserIdentityInfo call, whose default Connect quota is 2/s for the whole
    /// account; the default leaves half of it to live changes.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 1.0, value_parser = rate)]
    rate: f64,
}

fn class(name: &str) -> Result<ErrorClass, String> {
    parse_class(name).ok_or_else(|| {
        let names: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        format!("not a failure class; one of {}", names.join(", "))
    })
}

fn rate(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0 && *r <= 3000.0)
        .ok_or_else(|| "a number of messages per second above 0, at most 3000".into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.from == args.to {
        eprintln!("--from and --to are the same queue: nothing would ever leave it");
        return ExitCode::from(2);
    }
    let options = Options {
        from: args.from,
        to: args.to,
        classes: args.classes,
        max: args.max,
        dry_run: args.dry_run,
        rate: args.rate,
    };
    let client = moves::sqs_client().await;

    let bar = if std::io::stderr().is_terminal() {
        let depth = moves::approximate_depth(&client, &options.from).await;
        let bar = ProgressBar::with_draw_target(depth, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} looked at, {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let result = moves::redrive(&client, &options, |t| {
        bar.set_position(t.seen());
        bar.set_message(format!("{} moved", t.moved()));
    })
    .await;
    bar.finish_and_clear();

    let (tally, aborted) = match result {
        Ok(tally) => (tally, None),
        Err(a) => (a.tally, Some(a.reason)),
    };
    print!("{tally}");
    if options.dry_run {
        println!(
            "dry run: {} message(s) would be moved; nothing was sent or deleted",
            tally.would_move
        );
    }
    for u in &tally.unmoved {
        eprintln!("not moved: {} ({}): {}", u.message_id, u.class, u.reason);
    }
    if let Some(reason) = &aborted {
        eprintln!("stopped: {reason}; what is not moved stays in the dead-letter queue");
    }
    if tally.complete() && aborted.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
