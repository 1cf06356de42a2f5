//! The outcome report of a local run (`make demo`, `make sam-local`): one row per event
//! or record, what each dead-letter queue holds and the Connect calls the function made,
//! read from the emulator's journal and the queues; and the expected outcomes of the
//! sample events (`events/expected-outcomes.txt`), checked row by row.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use connect_emulator::EmulatorHandle;
use connect_emulator::Operation;
use serde_json::Value;

use crate::{HarnessError, Message, Queue, Sqs, kebab};

/// One line of the results table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The event file.
    pub file: String,
    /// The event id or the SQS record's messageId (`-` when there is none).
    pub record: String,
    /// `updated`, `unchanged`, `dead_lettered`, `handed_back`, `invocation error…`.
    pub outcome: String,
    /// The failure class, when there is one.
    pub class: String,
    /// Where the record went (a dead-letter queue), when it matters.
    pub queue: String,
}

/// A row of the table.
#[must_use]
pub fn row(file: &str, record: &str, outcome: &str, class: &str, queue: &str) -> Row {
    Row {
        file: file.to_owned(),
        record: record.to_owned(),
        outcome: outcome.to_owned(),
        class: class.to_owned(),
        queue: queue.to_owned(),
    }
}

fn print_table(header: [&str; 5], rows: &[[String; 5]]) {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            out.push_str(cell);
            if i < 4 {
                out.push_str(&" ".repeat(w.saturating_sub(cell.chars().count())));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    line(widths.map(|w| "-".repeat(w)).each_ref().map(String::as_str));
    for r in rows {
        line(r.each_ref().map(String::as_str));
    }
}

/// Prints the results table.
pub fn print_rows(rows: &[Row]) {
    println!("Results");
    let table: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.file.clone(),
                r.record.clone(),
                r.outcome.clone(),
                r.class.clone(),
                r.queue.clone(),
            ]
        })
        .collect();
    print_table(["FILE", "RECORD", "OUTCOME", "CLASS", "QUEUE"], &table);
}

/// The emulator seed at `path`, as JSON.
///
/// # Errors
/// When the file cannot be read or is not JSON.
pub fn read_seed(path: &Path) -> Result<Value, String> {
    serde_json::from_str(
        &std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
    )
    .map_err(|e| format!("{} is not JSON: {e}", path.display()))
}

/// The `*.json` files in `dir`, sorted by path.
///
/// # Errors
/// When the folder cannot be read.
pub fn event_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// An event file's name (the report's FILE column) and its bytes.
///
/// # Errors
/// When the file cannot be read.
pub fn read_event_file(path: &Path) -> Result<(String, Vec<u8>), String> {
    let file = path
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    let raw = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((file, raw))
}

/// Instances of an emulator seed, the first being the default.
#[must_use]
pub fn seed_instances(seed: &Value) -> Vec<String> {
    seed.get("instances")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("id").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Dead letters taken off the queues so far, by class.
pub type Collected = BTreeMap<String, Vec<Message>>;

/// What a report reads: the local SQS with one dead-letter queue per class, and the
/// Connect emulator.
pub struct Local<'a> {
    /// SQS client.
    pub sqs: &'a Sqs,
    /// The Connect emulator.
    pub emulator: &'a EmulatorHandle,
    /// Dead-letter queue per failure class.
    pub dlqs: &'a BTreeMap<String, Queue>,
    /// The source queue's own redrive target, when there is a source queue.
    pub last_resort: Option<&'a Queue>,
    /// Instances of the seed.
    pub instances: Vec<String>,
}

impl Local<'_> {
    /// The dead-letter queue name of `class`.
    #[must_use]
    pub fn queue_name_of(&self, class: &str) -> String {
        self.dlqs
            .get(class)
            .map_or_else(|| format!("dlq-{}", kebab(class)), |q| q.name.clone())
    }

    /// The Connect user a change document names, if it names one plainly.
    #[must_use]
    pub fn user_of(&self, body: &str) -> Option<String> {
        let doc: Value = serde_json::from_str(body).ok()?;
        let doc = doc.get("detail").unwrap_or(&doc);
        if let Some(id) = doc.get("UserId").and_then(Value::as_str) {
            return Some(id.rsplit('/').next().unwrap_or(id).to_owned());
        }
        let username = doc
            .get("Username")
            .or_else(|| doc.get("userName"))
            .and_then(Value::as_str)?;
        self.instances.iter().find_map(|i| {
            self.emulator
                .users(i)?
                .into_iter()
                .find(|u| u.username == username)
                .map(|u| u.id)
        })
    }

    /// Whether the journal entries after `since` hold a successful update of `user`.
    #[must_use]
    pub fn updated_since(&self, since: usize, user: Option<&str>) -> bool {
        self.emulator.journal().iter().skip(since).any(|e| {
            e.operation == "UpdateUserIdentityInfo"
                && e.status == 200
                && e.user_id.is_some()
                && e.user_id.as_deref() == user
        })
    }

    /// Moves what the dead-letter queues hold into `collected`; returns the new ones by
    /// `SourceId` (messageId or event id).
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn collect(
        &self,
        collected: &mut Collected,
    ) -> Result<BTreeMap<String, String>, HarnessError> {
        let mut fresh = BTreeMap::new();
        for (class, queue) in self.dlqs {
            for m in self.sqs.drain(&queue.url).await? {
                fresh.insert(
                    m.attr("SourceId").unwrap_or_default().to_owned(),
                    class.clone(),
                );
                collected.entry(class.clone()).or_default().push(m);
            }
        }
        Ok(fresh)
    }

    /// Prints what each dead-letter queue held (`origins`: SQS message id → where it came
    /// from) and the Connect calls the function made.
    ///
    /// # Errors
    /// When SQS fails.
    pub async fn print_summary(
        &self,
        collected: &mut Collected,
        origins: &BTreeMap<String, String>,
    ) -> Result<(), HarnessError> {
        println!("\nDead-letter queues");
        self.collect(collected).await?;
        for class in self.dlqs.keys() {
            let name = self.queue_name_of(class);
            let messages = collected.get(class).map_or(&[][..], Vec::as_slice);
            if messages.is_empty() {
                println!("  {name:<34} empty");
                continue;
            }
            println!("  {name:<34} {} message(s)", messages.len());
            for m in messages {
                let attr = |n: &str| m.attr(n).unwrap_or("-").to_owned();
                println!(
                    "    - {} {}  SourceId={}  EventId={}  InstanceId={}  UserId={}  Attempts={}  FailedAt={}",
                    attr("SourceType"),
                    attr("ErrorClass"),
                    attr("SourceId"),
                    attr("EventId"),
                    attr("InstanceId"),
                    attr("UserId"),
                    attr("Attempts"),
                    attr("FailedAt"),
                );
                if let Some(origin) = m.attr("SourceId").and_then(|id| origins.get(id)) {
                    println!("      sent for: {origin}");
                }
                println!("      ErrorMessage: {}", short(&attr("ErrorMessage"), 160));
                println!("      body: {}", short(&m.body, 160));
            }
        }
        if let Some(queue) = self.last_resort {
            let last_resort = self.sqs.receive_all(&queue.url).await?;
            println!(
                "  {:<34} {} message(s) (the source queue's own redrive target, the last resort)",
                queue.name,
                last_resort.len()
            );
        }

        let journal = self.emulator.journal();
        let mut calls: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for e in &journal {
            let entry = calls.entry(e.operation.clone()).or_default();
            entry.0 += 1;
            if e.status == 200 {
                entry.1 += 1;
            }
        }
        println!("\nConnect calls the function made");
        for (op, (all, ok)) in &calls {
            println!("  {op:<24} {all:>3} ({ok} succeeded)");
        }
        let updates = self.emulator.calls(Operation::UpdateUserIdentityInfo).len();
        println!("  UpdateUserIdentityInfo calls in all: {updates}");
        Ok(())
    }
}

fn short(text: &str, max: usize) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// The expected outcome of each sample event or record, keyed by (file, record).
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    by_row: BTreeMap<(String, String), (String, String)>,
    source: String,
}

impl Expectations {
    /// Reads a manifest: one `FILE RECORD OUTCOME [CLASS]` line per event or record,
    /// whitespace-separated; `#` starts a comment.
    ///
    /// # Errors
    /// When the file cannot be read or a line has fewer than three fields.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// As [`Expectations::load`], from text; `source` names it in messages.
    ///
    /// # Errors
    /// When a line has fewer than three or more than four fields, or repeats a row.
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let mut by_row = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [file, record, outcome, rest @ ..] = fields.as_slice() else {
                return Err(format!(
                    "{source}:{}: expected FILE RECORD OUTCOME [CLASS], got {line:?}",
                    n + 1
                ));
            };
            let class = match rest {
                [] => "",
                [class] => class,
                _ => return Err(format!("{source}:{}: too many fields in {line:?}", n + 1)),
            };
            let key = ((*file).to_owned(), (*record).to_owned());
            if by_row
                .insert(key, ((*outcome).to_owned(), class.to_owned()))
                .is_some()
            {
                return Err(format!("{source}:{}: {file} {record} twice", n + 1));
            }
        }
        Ok(Self {
            by_row,
            source: source.to_owned(),
        })
    }

    /// Every difference between `rows` and the expectations: a row whose outcome or class
    /// differs, a row without an expectation, an expectation without a row.
    #[must_use]
    pub fn check(&self, rows: &[Row]) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for r in rows {
            let key = (r.file.clone(), r.record.clone());
            match self.by_row.get(&key) {
                None => problems.push(format!(
                    "{} {}: no expected outcome in {} (ended {} {})",
                    r.file, r.record, self.source, r.outcome, r.class
                )),
                Some((outcome, class)) if *outcome != r.outcome || *class != r.class => {
                    problems.push(format!(
                        "{} {}: expected {outcome} {class}, ended {} {}",
                        r.file, r.record, r.outcome, r.class
                    ));
                }
                Some(_) => {}
            }
            seen.insert(key);
        }
        for (file, record) in self.by_row.keys() {
            if !seen.contains(&(file.clone(), record.clone())) {
                problems.push(format!(
                    "{file} {record}: expected in {} but no such event or record ran",
                    self.source
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
# file  record  outcome  class
a.json  e-1  updated
b.json  m-1  dead_lettered  MalformedEvent   # trailing comment
";

    #[test]
    fn rows_matching_the_manifest_leave_no_problem() {
        let expect = Expectations::parse(MANIFEST, "m").unwrap();
        let rows = [
            row("a.json", "e-1", "updated", "", ""),
            row("b.json", "m-1", "dead_lettered", "MalformedEvent", "dlq"),
        ];
        assert_eq!(expect.check(&rows), Vec::<String>::new());
    }

    #[test]
    fn a_different_class_an_unlisted_record_and_a_missing_one_are_each_reported() {
        let expect = Expectations::parse(MANIFEST, "m").unwrap();
        let rows = [
            row("b.json", "m-1", "dead_lettered", "ValidationError", ""),
            row("c.json", "x", "updated", "", ""),
        ];
        let problems = expect.check(&rows);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("expected dead_lettered MalformedEvent"));
        assert!(problems[1].contains("c.json x: no expected outcome in m"));
        assert!(problems[2].contains("a.json e-1: expected in m but no such"));
    }

    #[test]
    fn a_short_or_repeated_manifest_line_is_refused() {
        assert!(Expectations::parse("a.json e-1\n", "m").is_err());
        assert!(Expectations::parse("a.json e-1 updated\na.json e-1 unchanged\n", "m").is_err());
        assert!(Expectations::parse("a.json e-1 dead_lettered X Y\n", "m").is_err());
    }
}
