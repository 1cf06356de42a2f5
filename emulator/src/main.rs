//! `connect-emulator`: runs the local Amazon Connect as a process, for the demo and for
//! anything that cannot embed the library. It prints `listening on http://ADDR` once it accepts
//! connections, so a supervisor can wait for that line, and stops on SIGTERM or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

use connect_emulator::{Emulator, Seed};

const USAGE: &str = "\
usage: connect-emulator [--listen ADDR] [--seed FILE] [--region REGION] [--account ACCOUNT_ID] [--quiet]

  --listen ADDR     address to listen on (default 127.0.0.1:4599; port 0 picks a free one)
  --seed FILE       JSON seed loaded at start and restored by POST /_emulator/reset
  --region REGION   region used in ARNs (default us-east-1)
  --account ID      account id used in ARNs (default 123456789012)
  --quiet           do not log one line per Connect call on stderr";

struct Args {
    listen: String,
    seed: Option<String>,
    region: Option<String>,
    account: Option<String>,
    quiet: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:4599".to_owned(),
        seed: None,
        region: None,
        account: None,
        quiet: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--listen" => args.listen = value()?,
            "--seed" => args.seed = Some(value()?),
            "--region" => args.region = Some(value()?),
            "--account" => args.account = Some(value()?),
            "--quiet" => args.quiet = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn load_seed(path: &str) -> Result<Seed, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path} is not a valid seed: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("connect-emulator: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut builder = Emulator::builder().log_requests(!args.quiet);
    if let Some(path) = &args.seed {
        match load_seed(path) {
            Ok(seed) => builder = builder.seed(seed),
            Err(message) => {
                eprintln!("connect-emulator: {message}");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(region) = args.region {
        builder = builder.region(region);
    }
    if let Some(account) = args.account {
        builder = builder.account_id(account);
    }
    let emulator = match builder.start(args.listen.as_str()).await {
        Ok(emulator) => emulator,
        Err(e) => {
            eprintln!("connect-emulator: cannot start on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("listening on {}", emulator.endpoint_url());
    let _ = std::io::stdout().flush();
    wait_for_stop().await;
    emulator.shutdown().await;
    ExitCode::SUCCESS
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
