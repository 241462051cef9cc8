//! The reachability matrix of every endpoint to every endpoint, and its two printed forms:
//! a table (rows are sources, columns destinations, `.` allowed, `X` denied) and JSON
//! (`{"src": {"dst": true|false}}`).

use std::collections::BTreeMap;

use crate::eval::{Evaluator, Traffic};
use crate::model::Cluster;

/// Reachability between endpoints, in `namespace/name` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub endpoints: Vec<String>,
    /// `allowed[source][destination]`, indexed like `endpoints`.
    pub allowed: Vec<Vec<bool>>,
}

impl Matrix {
    /// Evaluates every ordered pair of endpoints for one kind of traffic.
    pub fn compute(cluster: &Cluster, traffic: Traffic) -> Self {
        let evaluator = Evaluator::new(cluster);
        let mut endpoints: Vec<_> = cluster.endpoints.iter().collect();
        endpoints.sort_by_key(|e| e.key());
        let allowed = endpoints
            .iter()
            .map(|src| {
                endpoints
                    .iter()
                    .map(|dst| evaluator.verdict(src, dst, traffic).allowed)
                    .collect()
            })
            .collect();
        Self {
            endpoints: endpoints.iter().map(|e| e.key()).collect(),
            allowed,
        }
    }

    /// Builds a matrix from a table in the printed form (used to write expectations).
    pub fn from_table(table: &str) -> Result<Self, String> {
        let mut lines = table.lines().map(str::trim).filter(|l| !l.is_empty());
        let header: Vec<String> = lines
            .next()
            .ok_or("the table is empty")?
            .split_whitespace()
            .map(str::to_string)
            .collect();
        let mut allowed = Vec::new();
        for (row, line) in lines.enumerate() {
            let mut cells = line.split_whitespace();
            let source = cells.next().unwrap_or_default();
            if header.get(row).map(String::as_str) != Some(source) {
                return Err(format!(
                    "row {row} is {source:?}, expected {:?}",
                    header.get(row)
                ));
            }
            let row_cells = cells
                .map(|cell| match cell {
                    "." => Ok(true),
                    "X" => Ok(false),
                    other => Err(format!("cell {other:?} in row {source}: use . or X")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            if row_cells.len() != header.len() {
                return Err(format!(
                    "row {source} has {} cells, expected {}",
                    row_cells.len(),
                    header.len()
                ));
            }
            allowed.push(row_cells);
        }
        if allowed.len() != header.len() {
            return Err(format!(
                "{} rows for {} columns",
                allowed.len(),
                header.len()
            ));
        }
        Ok(Self {
            endpoints: header,
            allowed,
        })
    }

    /// The table form, columns aligned, no trailing spaces.
    pub fn to_table(&self) -> String {
        let width = self.endpoints.iter().map(String::len).max().unwrap_or(0);
        let mut out = String::new();
        let mut push_line = |cells: Vec<String>| {
            let line: Vec<String> = cells.iter().map(|c| format!("{c:<width$}")).collect();
            out.push_str(line.join(" ").trim_end());
            out.push('\n');
        };
        let mut header = vec![String::new()];
        header.extend(self.endpoints.iter().cloned());
        push_line(header);
        for (source, row) in self.endpoints.iter().zip(&self.allowed) {
            let mut cells = vec![source.clone()];
            cells.extend(row.iter().map(|ok| if *ok { "." } else { "X" }.to_string()));
            push_line(cells);
        }
        out
    }

    /// The JSON form: `{"src": {"dst": allowed}}`.
    pub fn to_json(&self) -> String {
        let map: BTreeMap<&str, BTreeMap<&str, bool>> = self
            .endpoints
            .iter()
            .zip(&self.allowed)
            .map(|(source, row)| {
                let cells = self
                    .endpoints
                    .iter()
                    .map(String::as_str)
                    .zip(row.iter().copied());
                (source.as_str(), cells.collect())
            })
            .collect();
        serde_json::to_string_pretty(&map).unwrap_or_default() + "\n"
    }

    /// Cells where two matrices over the same endpoints differ, as `src -> dst`.
    pub fn differences(&self, other: &Matrix) -> Vec<String> {
        let mut found = Vec::new();
        if self.endpoints != other.endpoints {
            found.push(format!(
                "endpoints differ: {:?} vs {:?}",
                self.endpoints, other.endpoints
            ));
            return found;
        }
        for (i, source) in self.endpoints.iter().enumerate() {
            for (j, destination) in self.endpoints.iter().enumerate() {
                if self.allowed[i][j] != other.allowed[i][j] {
                    found.push(format!(
                        "{source} -> {destination}: {} vs {}",
                        self.allowed[i][j], other.allowed[i][j]
                    ));
                }
            }
        }
        found
    }
}
