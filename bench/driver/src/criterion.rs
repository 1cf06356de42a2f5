//! Criterion's saved estimates (`target/criterion/**/new/{benchmark,estimates}.json`).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One benchmark's latest result.
#[derive(Debug, Clone)]
pub struct Estimate {
    pub id: String,
    /// Median time per iteration, ns.
    pub median_ns: f64,
    /// Lower and upper bound of the median's confidence interval, ns.
    pub ci_ns: (f64, f64),
    /// Elements per iteration when the benchmark declares a throughput.
    pub elements: Option<u64>,
}

impl Estimate {
    /// Median time per element (per record), ns.
    pub fn per_element_ns(&self) -> f64 {
        self.median_ns / self.elements.unwrap_or(1).max(1) as f64
    }
}

fn find(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "new") {
                out.push(path);
            } else {
                find(&path, out);
            }
        }
    }
}

fn read(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The estimates under `root` for the benchmark groups named in `groups`, sorted by id.
pub fn estimates(root: &Path, groups: &[&str]) -> Vec<Estimate> {
    let mut dirs = Vec::new();
    find(root, &mut dirs);
    let mut out: Vec<Estimate> = dirs
        .iter()
        .filter_map(|dir| {
            let bench = read(&dir.join("benchmark.json"))?;
            let estimates = read(&dir.join("estimates.json"))?;
            let group = bench.get("group_id")?.as_str()?;
            if !groups.contains(&group) {
                return None;
            }
            let median = estimates.get("median")?;
            let ci = median.get("confidence_interval")?;
            Some(Estimate {
                id: bench.get("full_id")?.as_str()?.to_owned(),
                median_ns: median.get("point_estimate")?.as_f64()?,
                ci_ns: (
                    ci.get("lower_bound")?.as_f64()?,
                    ci.get("upper_bound")?.as_f64()?,
                ),
                elements: bench
                    .get("throughput")
                    .and_then(|t| t.get("Elements"))
                    .and_then(Value::as_u64),
            })
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}
