//! Reconciliation: does the server's count of closes, by reason, match what this run did?
//!
//! Every scenario instance that reached the server declares the close reason(s) the server must
//! record for it: an [`Expect`] per connection (two for the resume scenarios, whose session
//! outlives its first connection). After the run, the deltas of
//! `gameserver_sessions_closed_total{reason}` must be explained exactly:
//!
//! - an exact expectation needs one close of that reason;
//! - a set expectation (the crash scenario: `peer_reset` or `truncated_frame`) needs one close of
//!   any reason in the set, so the set is reconciled as a group: after the exact expectations are
//!   taken out, the observed closes over the set's reasons must cover the set's instances;
//! - an instance whose handshake failed after its TCP connect may or may not have left a session
//!   behind; it may explain at most one close of any reason.
//!
//! Deciding whether an assignment of observed closes to instances exists is a small bipartite
//! flow problem (instances grouped by expectation on one side, reasons on the other); solving it
//! as one handles overlapping sets without special cases. Any close left unexplained, and any
//! expectation left uncovered, is a disagreement.

use std::collections::{BTreeMap, BTreeSet};

/// A reason the server records in the `reason` label of `gameserver_sessions_closed_total`: the
/// protocol crate's shared vocabulary.
pub use protocol::CloseReason as Reason;

/// [`Reconciliation::method`] when the server's `/closes` record was read.
pub const METHOD_CLOSES: &str = "closes by player prefix";
/// [`Reconciliation::method`] when the closed-sessions counter was compared.
pub const METHOD_COUNTERS: &str = "counter deltas";

/// What the server must record for one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the instance never became a session (connect failed, or the server turned it
    /// away as full before any `Hello`).
    Nothing,
    /// Exactly this reason.
    Exact(Reason),
    /// One close with any reason of this set.
    OneOf(&'static [Reason]),
    /// Unknowable: the TCP connect succeeded but the handshake failed, so the server may or may
    /// not have counted a close, under any reason.
    Unknown,
}

/// The sum of all instances' expectations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expected {
    exact: BTreeMap<Reason, u64>,
    /// (label, reasons, count); one entry per label and set.
    sets: Vec<(String, &'static [Reason], u64)>,
    unknown: u64,
}

impl Expected {
    /// Adds one instance's expectation; `label` names set groups in the table (the scenario).
    pub fn add(&mut self, label: &str, expect: Expect) {
        match expect {
            Expect::Nothing => {}
            Expect::Exact(reason) => *self.exact.entry(reason).or_default() += 1,
            Expect::OneOf(reasons) => {
                match self
                    .sets
                    .iter_mut()
                    .find(|(l, r, _)| l == label && *r == reasons)
                {
                    Some(entry) => entry.2 += 1,
                    None => self.sets.push((label.to_owned(), reasons, 1)),
                }
            }
            Expect::Unknown => self.unknown += 1,
        }
    }

    /// Closes this run must have caused, at least (the unknowns may add up to `unknown` more).
    pub fn total(&self) -> u64 {
        self.exact.values().sum::<u64>() + self.sets.iter().map(|s| s.2).sum::<u64>()
    }
}

/// One reason's line in the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReasonRow {
    /// The metric label.
    pub reason: String,
    /// Instances that expect exactly this reason.
    pub expected: u64,
    /// Closes of this reason attributed to set expectations (the crash scenario).
    pub from_sets: u64,
    /// Closes of this reason attributed to instances whose handshake failed.
    pub from_unknown: u64,
    /// The counter's delta over the run.
    pub observed: i64,
    /// `ok`, `MISSING n`, `EXTRA n` or `COUNTER WENT DOWN`.
    pub verdict: String,
}

/// One set expectation's line in the table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetRow {
    /// The scenario that declared it.
    pub label: String,
    /// The reasons any of which is acceptable.
    pub reasons: Vec<String>,
    /// Instances.
    pub expected: u64,
    /// Instances covered by observed closes.
    pub matched: u64,
}

/// The verdict of one run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reconciliation {
    /// True when every observed close is explained and every expected close observed.
    pub ok: bool,
    /// How the server's account was read: `closes by player prefix` (the server's `/closes`
    /// record of this run's own players: exact beside other traffic) or `counter deltas`
    /// (`gameserver_sessions_closed_total` before and after: exact only when this run is the
    /// server's only traffic).
    pub method: String,
    /// Closes this run must have caused.
    pub expected_total: u64,
    /// Closes the server counted over the run.
    pub observed_total: i64,
    /// Instances whose server-side fate is unknowable, each allowed to explain one close.
    pub unknown_allowed: u64,
    /// Per reason.
    pub rows: Vec<ReasonRow>,
    /// Per set expectation.
    pub sets: Vec<SetRow>,
    /// What a disagreement may mean.
    pub notes: Vec<String>,
}

/// Counter deltas between two scrapes, by label. Labels only in `after` count from zero.
pub fn deltas(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, i64> {
    let labels: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    labels
        .into_iter()
        .map(|label| {
            let b = before.get(label).copied().unwrap_or(0.0);
            let a = after.get(label).copied().unwrap_or(0.0);
            (label.clone(), (a - b).round() as i64)
        })
        .collect()
}

/// A tiny max-flow over an adjacency matrix (a few dozen nodes at most).
struct Flow {
    cap: Vec<Vec<u64>>,
    flow: Vec<Vec<i128>>,
}

impl Flow {
    fn new(nodes: usize) -> Flow {
        Flow {
            cap: vec![vec![0; nodes]; nodes],
            flow: vec![vec![0; nodes]; nodes],
        }
    }

    fn residual(&self, u: usize, v: usize) -> i128 {
        i128::from(self.cap[u][v]) - self.flow[u][v]
    }

    /// Pushes as much as possible from `s` to `t` (continuing from the current flow) and returns
    /// how much was added. Augmenting paths never lower the flow on an edge out of `s`, so flow
    /// already committed to earlier groups survives later rounds.
    fn augment(&mut self, s: usize, t: usize) -> u64 {
        let n = self.cap.len();
        let mut added = 0u64;
        loop {
            let mut prev = vec![usize::MAX; n];
            prev[s] = s;
            let mut queue = std::collections::VecDeque::from([s]);
            while let Some(u) = queue.pop_front() {
                let reachable: Vec<usize> = (0..n).filter(|&v| self.residual(u, v) > 0).collect();
                for v in reachable {
                    if prev[v] == usize::MAX {
                        prev[v] = u;
                        queue.push_back(v);
                    }
                }
            }
            if prev[t] == usize::MAX {
                return added;
            }
            let mut push = i128::MAX;
            let mut v = t;
            while v != s {
                push = push.min(self.residual(prev[v], v));
                v = prev[v];
            }
            let mut v = t;
            while v != s {
                let u = prev[v];
                self.flow[u][v] += push;
                self.flow[v][u] -= push;
                v = u;
            }
            added += u64::try_from(push).unwrap_or(0);
        }
    }

    fn on(&self, u: usize, v: usize) -> u64 {
        u64::try_from(self.flow[u][v].max(0)).unwrap_or(0)
    }
}

/// Compares what the run expected with what the server counted.
pub fn reconcile(expected: &Expected, observed: &BTreeMap<String, i64>) -> Reconciliation {
    // Every label that matters: expected reasons, set reasons, observed labels.
    let mut labels: BTreeSet<String> = observed.keys().cloned().collect();
    labels.extend(expected.exact.keys().map(|r| r.as_str().to_owned()));
    for (_, reasons, _) in &expected.sets {
        labels.extend(reasons.iter().map(|r| r.as_str().to_owned()));
    }
    let labels: Vec<String> = labels.into_iter().collect();
    let index = |label: &str| labels.iter().position(|l| l == label);

    // Nodes: source, sink, exact groups (one per reason), set groups, the unknown group, reasons.
    let exact: Vec<(Reason, u64)> = expected.exact.iter().map(|(&r, &n)| (r, n)).collect();
    let (source, sink) = (0, 1);
    let exact_base = 2;
    let set_base = exact_base + exact.len();
    let unknown_node = set_base + expected.sets.len();
    let reason_base = unknown_node + 1;
    let mut flow = Flow::new(reason_base + labels.len());
    let unlimited = u64::MAX / 4;

    for (i, (reason, n)) in exact.iter().enumerate() {
        flow.cap[source][exact_base + i] = *n;
        if let Some(j) = index(reason.as_str()) {
            flow.cap[exact_base + i][reason_base + j] = unlimited;
        }
    }
    for (i, (_, reasons, n)) in expected.sets.iter().enumerate() {
        flow.cap[source][set_base + i] = *n;
        for reason in reasons.iter() {
            if let Some(j) = index(reason.as_str()) {
                flow.cap[set_base + i][reason_base + j] = unlimited;
            }
        }
    }
    let mut went_down = false;
    for (j, label) in labels.iter().enumerate() {
        let seen = observed.get(label).copied().unwrap_or(0);
        went_down |= seen < 0;
        flow.cap[reason_base + j][sink] = u64::try_from(seen.max(0)).unwrap_or(0);
        flow.cap[unknown_node][reason_base + j] = unlimited;
    }

    // Round one: the instances that must have produced a close.
    let mandatory = expected.total();
    let covered = flow.augment(source, sink);
    // Round two: let the unknowable instances explain what is left.
    flow.cap[source][unknown_node] = expected.unknown;
    let explained = covered + flow.augment(source, sink);
    let observed_total: i64 = observed.values().sum();
    let observed_positive: u64 = observed
        .values()
        .map(|&v| u64::try_from(v.max(0)).unwrap_or(0))
        .sum();
    let ok = !went_down && covered == mandatory && explained == observed_positive;

    let mut rows = Vec::new();
    let mut extra = Vec::new();
    let mut missing = Vec::new();
    for (j, label) in labels.iter().enumerate() {
        let node = reason_base + j;
        let exp = exact
            .iter()
            .position(|(r, _)| r.as_str() == label)
            .map_or(0, |i| exact[i].1);
        let from_exact: u64 = (0..exact.len())
            .map(|i| flow.on(exact_base + i, node))
            .sum();
        let from_sets: u64 = (0..expected.sets.len())
            .map(|i| flow.on(set_base + i, node))
            .sum();
        let from_unknown = flow.on(unknown_node, node);
        let seen = observed.get(label).copied().unwrap_or(0);
        if exp == 0 && from_sets == 0 && seen == 0 {
            continue;
        }
        let seen_u = u64::try_from(seen.max(0)).unwrap_or(0);
        let explained_here = from_exact + from_sets + from_unknown;
        let verdict = if seen < 0 {
            "COUNTER WENT DOWN".to_owned()
        } else if from_exact < exp {
            missing.push(format!("{label} ({})", exp - from_exact));
            format!("MISSING {}", exp - from_exact)
        } else if explained_here < seen_u {
            extra.push(format!("{label} ({})", seen_u - explained_here));
            format!("EXTRA {}", seen_u - explained_here)
        } else {
            "ok".to_owned()
        };
        rows.push(ReasonRow {
            reason: label.clone(),
            expected: exp,
            from_sets,
            from_unknown,
            observed: seen,
            verdict,
        });
    }
    let sets: Vec<SetRow> = expected
        .sets
        .iter()
        .enumerate()
        .map(|(i, (label, reasons, n))| SetRow {
            label: label.clone(),
            reasons: reasons.iter().map(|r| r.as_str().to_owned()).collect(),
            expected: *n,
            matched: flow.on(source, set_base + i),
        })
        .collect();

    let mut notes = Vec::new();
    if went_down {
        notes.push(
            "a counter went down during the run: the server restarted, so its counts cannot be compared".to_owned(),
        );
    }
    if !missing.is_empty() {
        notes.push(format!(
            "the server did not count closes this run caused: {}; it may still be closing them \
             (slow detection), or it classified them under another reason",
            missing.join(", ")
        ));
    }
    for set in sets.iter().filter(|s| s.matched < s.expected) {
        notes.push(format!(
            "{} of {} {} instances have no close among {{{}}}",
            set.expected - set.matched,
            set.expected,
            set.label,
            set.reasons.join(", ")
        ));
    }
    if !extra.is_empty() {
        notes.push(format!(
            "the server counted more closes than this run caused: {}; other traffic on the same \
             server (other clients, health checks, an earlier run's sessions ending late) may \
             explain it: by counter deltas, reconciliation assumes client-sim is the server's \
             only traffic",
            extra.join(", ")
        ));
    }
    if expected.unknown > 0 {
        notes.push(format!(
            "{} instance(s) connected but failed their handshake; each may explain one close of \
             any reason",
            expected.unknown
        ));
    }
    Reconciliation {
        ok,
        method: METHOD_COUNTERS.to_owned(),
        expected_total: mandatory,
        observed_total,
        unknown_allowed: expected.unknown,
        rows,
        sets,
        notes,
    }
}

impl Reconciliation {
    /// The table printed in the summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "  {:<18} {:>9} {:>9} {:>9}  verdict\n",
            "reason", "expected", "in sets", "observed"
        ));
        for row in &self.rows {
            let mut verdict = row.verdict.clone();
            if row.from_unknown > 0 {
                verdict.push_str(&format!(" ({} from failed handshakes)", row.from_unknown));
            }
            out.push_str(&format!(
                "  {:<18} {:>9} {:>9} {:>9}  {}\n",
                row.reason, row.expected, row.from_sets, row.observed, verdict
            ));
        }
        for set in &self.sets {
            out.push_str(&format!(
                "  set {}: {} instance(s), any of {{{}}}: {} matched  {}\n",
                set.label,
                set.expected,
                set.reasons.join(", "),
                set.matched,
                if set.matched == set.expected {
                    "ok"
                } else {
                    "MISSING"
                }
            ));
        }
        out.push_str(&format!("  method: {}\n", self.method));
        out.push_str(&format!(
            "  RESULT: {} ({} closes expected{}, {} observed)\n",
            if self.ok { "MATCH" } else { "MISMATCH" },
            self.expected_total,
            if self.unknown_allowed > 0 {
                format!(" + up to {} unknown", self.unknown_allowed)
            } else {
                String::new()
            },
            self.observed_total
        ));
        for note in &self.notes {
            out.push_str(&format!("  note: {note}\n"));
        }
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const CRASH: &[Reason] = &[Reason::PeerReset, Reason::TruncatedFrame];

    fn observed(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
        pairs.iter().map(|&(l, n)| (l.to_owned(), n)).collect()
    }

    fn expected(exact: &[(Reason, u64)], crash: u64, unknown: u64) -> Expected {
        let mut e = Expected::default();
        for &(reason, n) in exact {
            for _ in 0..n {
                e.add("x", Expect::Exact(reason));
            }
        }
        for _ in 0..crash {
            e.add("crash", Expect::OneOf(CRASH));
        }
        for _ in 0..unknown {
            e.add("x", Expect::Unknown);
        }
        e.add("x", Expect::Nothing);
        e
    }

    #[test]
    fn exact_expectations_match_exact_deltas() {
        let e = expected(&[(Reason::ClientQuit, 3), (Reason::PeerEof, 1)], 0, 0);
        let r = reconcile(
            &e,
            &observed(&[("client_quit", 3), ("peer_eof", 1), ("kicked", 0)]),
        );
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.expected_total, 4);
        assert_eq!(
            r.rows.len(),
            2,
            "zero rows with no expectation are left out"
        );
        assert!(r.rows.iter().all(|row| row.verdict == "ok"));
    }

    #[test]
    fn a_set_is_reconciled_as_a_group_after_the_exact_ones() {
        // 2 abort (exact peer_reset) + 3 crash (reset or truncated): 3 resets and 2 truncations.
        let e = expected(&[(Reason::PeerReset, 2)], 3, 0);
        let r = reconcile(&e, &observed(&[("peer_reset", 3), ("truncated_frame", 2)]));
        assert!(r.ok, "{}", r.render());
        assert_eq!(r.sets[0].matched, 3);
        let reset = r
            .rows
            .iter()
            .find(|row| row.reason == "peer_reset")
            .unwrap();
        assert_eq!((reset.expected, reset.from_sets), (2, 1));
    }

    #[test]
    fn a_set_cannot_borrow_closes_owed_to_exact_expectations() {
        // 2 aborts need 2 resets; the crash needs one more close in its set, and there is none:
        // the peer_eof does not belong to the set.
        let e = expected(&[(Reason::PeerReset, 2)], 1, 0);
        let r = reconcile(&e, &observed(&[("peer_reset", 2), ("peer_eof", 1)]));
        assert!(!r.ok);
        assert_eq!(r.sets[0].matched, 0);
        assert!(
            r.rows
                .iter()
                .any(|row| row.reason == "peer_eof" && row.verdict == "EXTRA 1")
        );
        assert!(r.render().contains("MISMATCH"));
    }

    #[test]
    fn a_missing_close_fails() {
        let e = expected(&[(Reason::IdleTimeout, 2), (Reason::ClientQuit, 1)], 0, 0);
        let r = reconcile(&e, &observed(&[("idle_timeout", 1), ("client_quit", 1)]));
        assert!(!r.ok);
        let idle = r
            .rows
            .iter()
            .find(|row| row.reason == "idle_timeout")
            .unwrap();
        assert_eq!(idle.verdict, "MISSING 1");
        assert!(r.notes.iter().any(|n| n.contains("did not count")));
    }

    #[test]
    fn a_misclassified_close_fails_on_both_sides() {
        let e = expected(&[(Reason::PeerEof, 1)], 0, 0);
        let r = reconcile(&e, &observed(&[("peer_reset", 1)]));
        assert!(!r.ok);
        let verdicts: Vec<_> = r
            .rows
            .iter()
            .map(|row| (row.reason.as_str(), row.verdict.as_str()))
            .collect();
        assert_eq!(
            verdicts,
            vec![("peer_eof", "MISSING 1"), ("peer_reset", "EXTRA 1")]
        );
    }

    #[test]
    fn extra_closes_fail_and_name_other_traffic() {
        let e = expected(&[(Reason::ClientQuit, 2)], 0, 0);
        let r = reconcile(&e, &observed(&[("client_quit", 5)]));
        assert!(!r.ok);
        assert!(
            r.notes
                .iter()
                .any(|n| n.contains("other traffic on the same server"))
        );
    }

    #[test]
    fn failed_handshakes_may_explain_a_close_each_but_need_not() {
        let e = expected(&[(Reason::ClientQuit, 2)], 0, 2);
        assert!(reconcile(&e, &observed(&[("client_quit", 2)])).ok);
        let r = reconcile(
            &e,
            &observed(&[
                ("client_quit", 2),
                ("handshake_timeout", 1),
                ("peer_eof", 1),
            ]),
        );
        assert!(r.ok, "{}", r.render());
        let r = reconcile(&e, &observed(&[("client_quit", 2), ("peer_eof", 3)]));
        assert!(!r.ok);
    }

    #[test]
    fn a_counter_that_went_down_fails() {
        let e = Expected::default();
        let r = reconcile(&e, &observed(&[("client_quit", -4)]));
        assert!(!r.ok);
        assert_eq!(r.rows[0].verdict, "COUNTER WENT DOWN");
    }

    #[test]
    fn deltas_count_new_labels_from_zero() {
        let before: BTreeMap<String, f64> = [("client_quit".to_owned(), 10.0)].into();
        let after: BTreeMap<String, f64> =
            [("client_quit".to_owned(), 12.0), ("kicked".to_owned(), 1.0)].into();
        assert_eq!(
            deltas(&before, &after),
            observed(&[("client_quit", 2), ("kicked", 1)])
        );
    }
}
