//! Outcomes of the checks and the table `weftctl check` prints.

use std::fmt::Write as _;

/// How one check ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "SKIP",
        }
    }

    fn detail(&self) -> &str {
        match self {
            Outcome::Pass(detail) | Outcome::Fail(detail) | Outcome::Skip(detail) => detail,
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub outcome: Outcome,
}

/// All rows, in the order the checks ran.
#[derive(Default, Debug)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    pub fn add(&mut self, name: impl Into<String>, outcome: Outcome) {
        self.rows.push(Row {
            name: name.into(),
            outcome,
        });
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        !self
            .rows
            .iter()
            .any(|row| matches!(row.outcome, Outcome::Fail(_)))
    }

    /// How many checks were skipped.
    pub fn skipped(&self) -> usize {
        self.rows
            .iter()
            .filter(|row| matches!(row.outcome, Outcome::Skip(_)))
            .count()
    }

    /// The table: check, result, detail; then the totals.
    pub fn table(&self) -> String {
        let width = self
            .rows
            .iter()
            .map(|row| row.name.len())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut out = format!("{:<width$}  RESULT  DETAIL\n", "CHECK");
        let mut counts = [0usize; 3];
        for row in &self.rows {
            let index = match row.outcome {
                Outcome::Pass(_) => 0,
                Outcome::Fail(_) => 1,
                Outcome::Skip(_) => 2,
            };
            counts[index] += 1;
            let detail = row.outcome.detail().replace('\n', " ");
            let _ = writeln!(
                out,
                "{:<width$}  {:<6}  {}",
                row.name,
                row.outcome.label(),
                detail
            );
        }
        let _ = writeln!(
            out,
            "{} passed, {} failed, {} skipped",
            counts[0], counts[1], counts[2]
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_rows_and_counts_outcomes() {
        let mut report = Report::default();
        report.add(
            "pod to pod, same node",
            Outcome::Pass("echo-a answered".into()),
        );
        report.add(
            "cross subnet",
            Outcome::Skip("no node in another subnet".into()),
        );
        report.add("dns", Outcome::Fail("no answer".into()));
        let table = report.table();
        let lines: Vec<_> = table.lines().collect();
        assert_eq!(lines[0], "CHECK                  RESULT  DETAIL");
        assert_eq!(lines[1], "pod to pod, same node  PASS    echo-a answered");
        assert_eq!(
            lines[2],
            "cross subnet           SKIP    no node in another subnet"
        );
        assert_eq!(lines[3], "dns                    FAIL    no answer");
        assert_eq!(lines[4], "1 passed, 1 failed, 1 skipped");
        assert!(!report.passed());
    }

    #[test]
    fn skips_do_not_fail_the_run() {
        let mut report = Report::default();
        report.add("a", Outcome::Pass(String::new()));
        report.add("b", Outcome::Skip("one node".into()));
        assert!(report.passed());
    }
}
