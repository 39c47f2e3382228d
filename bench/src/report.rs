//! Figures, medians over runs, targets, and the results table written into BENCHMARKS.md.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

/// The markers between which the results table is written.
pub const BEGIN: &str = "<!-- bench:results:begin -->";
/// See [`BEGIN`].
pub const END: &str = "<!-- bench:results:end -->";

/// What a figure must reach.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    /// No target: reported only.
    None,
    /// Our figure at most this.
    AtMost(f64),
    /// Our figure at least this.
    AtLeast(f64),
    /// Our figure divided by the baseline's (same run) at most this.
    RatioAtMost(f64),
    /// Our figure divided by the baseline's (same run) at least this.
    RatioAtLeast(f64),
}

/// One figure from one run.
#[derive(Debug, Clone)]
pub struct Measure {
    /// Workload, such as "1 hold".
    pub workload: &'static str,
    /// What was measured.
    pub metric: &'static str,
    /// Unit of `ours` and `baseline`.
    pub unit: &'static str,
    /// The game server's figure.
    pub ours: Option<f64>,
    /// The baseline's figure in the same run.
    pub baseline: Option<f64>,
    /// The target.
    pub goal: Goal,
    /// Over several runs, report the worst (largest) figure instead of the median: for counts
    /// of things that must not happen at all.
    pub worst: bool,
    /// A note printed under the table and referred to from the row: for a row whose "baseline"
    /// is a peer (mosquitto), which program it was and how it ran.
    pub note: Option<String>,
}

impl Measure {
    /// A figure of ours with no baseline.
    pub fn ours(workload: &'static str, metric: &'static str, unit: &'static str) -> Measure {
        Measure {
            workload,
            metric,
            unit,
            ours: None,
            baseline: None,
            goal: Goal::None,
            worst: false,
            note: None,
        }
    }

    /// Attaches a note (see [`Measure::note`]).
    pub fn note(mut self, note: impl Into<String>) -> Measure {
        self.note = Some(note.into());
        self
    }

    /// A count of things that must not happen: the table shows the worst run, and no ratio.
    pub fn worst_of_runs(mut self) -> Measure {
        self.worst = true;
        self
    }

    /// Sets our value.
    pub fn value(mut self, value: f64) -> Measure {
        self.ours = Some(value);
        self
    }

    /// Sets the baseline's value.
    pub fn baseline(mut self, value: Option<f64>) -> Measure {
        self.baseline = value;
        self
    }

    /// Sets the target.
    pub fn goal(mut self, goal: Goal) -> Measure {
        self.goal = goal;
        self
    }

    fn ratio(&self) -> Option<f64> {
        if self.worst {
            return None;
        }
        match (self.ours, self.baseline) {
            (Some(o), Some(b)) if b != 0.0 => Some(o / b),
            _ => None,
        }
    }
}

/// A figure over several runs: medians of ours, the baseline's and the same-run ratios.
#[derive(Debug, Clone)]
pub struct Row {
    /// The first run's measure (names, unit, goal).
    pub first: Measure,
    /// Median of ours (the worst run for counts that must stay zero).
    pub ours: Option<f64>,
    /// Median (or worst) of the baseline's.
    pub baseline: Option<f64>,
    /// Median of the per-run ratios.
    pub ratio: Option<f64>,
    /// How many runs produced it.
    pub runs: usize,
}

impl Row {
    /// Whether the target is met; `None` when there is no target or no figure.
    pub fn pass(&self) -> Option<bool> {
        match self.first.goal {
            Goal::None => None,
            Goal::AtMost(t) => self.ours.map(|v| v <= t),
            Goal::AtLeast(t) => self.ours.map(|v| v >= t),
            Goal::RatioAtMost(t) => self.ratio.map(|r| r <= t),
            Goal::RatioAtLeast(t) => self.ratio.map(|r| r >= t),
        }
    }
}

/// The median of some values (the mean of the middle two for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Groups the measures of every run by workload and metric, in first-seen order.
pub fn summarize(measures: &[Measure]) -> Vec<Row> {
    let mut order = Vec::new();
    let mut groups: BTreeMap<(&str, &str), Vec<&Measure>> = BTreeMap::new();
    for m in measures {
        let key = (m.workload, m.metric);
        if !groups.contains_key(&key) {
            order.push(key);
        }
        groups.entry(key).or_default().push(m);
    }
    let mut rows: Vec<Row> = order
        .into_iter()
        .filter_map(|key| {
            let group = groups.get(&key)?;
            let first = (*group.first()?).clone();
            let pick = |f: &dyn Fn(&Measure) -> Option<f64>| {
                let mut values: Vec<f64> = group.iter().filter_map(|m| f(m)).collect();
                if first.worst {
                    values.into_iter().reduce(f64::max)
                } else {
                    median(&mut values)
                }
            };
            Some(Row {
                ours: pick(&|m| m.ours),
                baseline: pick(&|m| m.baseline),
                ratio: pick(&|m| m.ratio()),
                runs: group.iter().filter(|m| m.ours.is_some()).count(),
                first,
            })
        })
        .collect();
    // By workload number ("10 transports" after "9 burst"); within a workload, in the order
    // measured.
    rows.sort_by_key(|row| workload_number(row.first.workload));
    rows
}

/// The number a workload's name starts with (`9` of "9 burst"); names without one sort last.
fn workload_number(workload: &str) -> u32 {
    let digits = workload.len()
        - workload
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    workload[..digits].parse().unwrap_or(u32::MAX)
}

fn number(value: f64) -> String {
    let abs = value.abs();
    if abs >= 1000.0 {
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if whole < 0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if abs >= 100.0 || value == value.trunc() {
        format!("{value:.0}")
    } else if abs >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn goal_text(goal: Goal, unit: &str) -> String {
    match goal {
        Goal::None => "-".to_owned(),
        Goal::AtMost(t) => format!("<= {} {unit}", number(t)),
        Goal::AtLeast(t) => format!(">= {} {unit}", number(t)),
        Goal::RatioAtMost(t) => format!("ratio <= {t}x"),
        Goal::RatioAtLeast(t) => format!("ratio >= {t}x"),
    }
}

/// The results as a Markdown table, and the rows' notes under it, numbered.
pub fn table(rows: &[Row]) -> String {
    let mut notes: Vec<&str> = Vec::new();
    let mut out = String::from(
        "| workload | figure | unit | ours | baseline | ratio | runs | target | result |\n\
         |---|---|---|---:|---:|---:|---:|---|---|\n",
    );
    for row in rows {
        let m = &row.first;
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), number);
        let result = match row.pass() {
            None if m.goal == Goal::None => "-",
            None => "not measured",
            Some(true) => "pass",
            Some(false) => "**miss**",
        };
        let reference = match m.note.as_deref() {
            Some(note) => {
                let n = match notes.iter().position(|n| *n == note) {
                    Some(i) => i + 1,
                    None => {
                        notes.push(note);
                        notes.len()
                    }
                };
                format!(" (note {n})")
            }
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} | {} | {} | {} | {} | {} | {} |",
            m.workload,
            m.metric,
            reference,
            m.unit,
            cell(row.ours),
            cell(row.baseline),
            row.ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x")),
            row.runs,
            goal_text(m.goal, m.unit),
            result,
        );
    }
    if !notes.is_empty() {
        out.push_str("\nNotes:\n\n");
        for (i, note) in notes.iter().enumerate() {
            let _ = writeln!(out, "{}. {note}", i + 1);
        }
    }
    out
}

/// The machine: CPU model and count from /proc/cpuinfo, the kernel from uname.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let uname = command_line("uname", &["-srm"]);
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or_else(String::new, |kib| {
            format!(", {} GiB RAM", kib / (1024 * 1024))
        });
    let fds = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .map(|(_, hard)| format!(", descriptor limit {hard}"))
        .unwrap_or_default();
    format!("{cpus} x {model}{memory}, {uname}{fds}")
}

/// The first line a command prints, or "unknown".
pub fn command_line(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Replaces what lies between the markers in `path` with `section`, or appends the markers and
/// the section when they are missing.
pub fn write_between_markers(path: &Path, section: &str) -> anyhow::Result<()> {
    write_between(path, BEGIN, END, section)
}

/// [`write_between_markers`] for the markers `<!-- bench:NAME:begin -->` and
/// `<!-- bench:NAME:end -->`.
pub fn write_section(path: &Path, name: &str, section: &str) -> anyhow::Result<()> {
    let begin = format!("<!-- bench:{name}:begin -->");
    let end = format!("<!-- bench:{name}:end -->");
    write_between(path, &begin, &end, section)
}

fn write_between(path: &Path, begin: &str, end: &str, section: &str) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{begin}\n{section}\n{end}");
    let updated = match (text.find(begin), text.find(end)) {
        (Some(start), Some(stop)) if start < stop => {
            format!("{}{block}{}", &text[..start], &text[stop + end.len()..])
        }
        _ => format!("{text}\n{block}\n"),
    };
    std::fs::write(path, updated).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_workloads_numbers_and_the_order_measured_within_one() {
        let measures = [
            Measure::ours("10 transports", "over TLS", "KiB").value(6.0),
            Measure::ours("2 detect", "p99", "ms").value(30.0),
            Measure::ours("9 burst", "peak", "MiB").value(60.0),
            Measure::ours("2 detect", "p50", "ms").value(20.0),
            Measure::ours("1 hold", "per session", "KiB").value(3.4),
        ];
        let order: Vec<(&str, &str)> = summarize(&measures)
            .iter()
            .map(|row| (row.first.workload, row.first.metric))
            .collect();
        assert_eq!(
            order,
            [
                ("1 hold", "per session"),
                ("2 detect", "p99"),
                ("2 detect", "p50"),
                ("9 burst", "peak"),
                ("10 transports", "over TLS"),
            ]
        );
    }
}
