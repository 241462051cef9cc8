//! The connectivity matrix: a TCP connection from every pod's namespace to every pod and node
//! address, each cell probed on its own thread, printed as a table.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::host::tcp_open;

/// A probe source or target.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name in the table.
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    pub ip: Ipv4Addr,
}

/// Which sources reached which targets on one port.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub port: u16,
    pub rows: Vec<String>,
    pub columns: Vec<String>,
    /// `cells[row][column]`: `None` for a pod and itself.
    pub cells: Vec<Vec<Option<bool>>>,
}

impl Matrix {
    /// Probes every source → target pair on TCP `port`; a cell is open when one of `tries`
    /// connections (200 ms apart) is answered.
    pub fn probe(sources: &[Endpoint], targets: &[Endpoint], port: u16, tries: usize) -> Self {
        let cells = std::thread::scope(|scope| {
            let handles: Vec<Vec<_>> = sources
                .iter()
                .map(|source| {
                    targets
                        .iter()
                        .map(|target| {
                            scope.spawn(move || {
                                (source.netns != target.netns).then(|| {
                                    (0..tries.max(1)).any(|attempt| {
                                        if attempt > 0 {
                                            std::thread::sleep(Duration::from_millis(200));
                                        }
                                        tcp_open(&source.netns, target.ip, port)
                                    })
                                })
                            })
                        })
                        .collect()
                })
                .collect();
            handles
                .into_iter()
                .map(|row| {
                    row.into_iter()
                        .map(|handle| handle.join().unwrap_or(Some(false)))
                        .collect()
                })
                .collect()
        });
        Self {
            port,
            rows: sources.iter().map(|source| source.name.clone()).collect(),
            columns: targets.iter().map(|target| target.name.clone()).collect(),
            cells,
        }
    }

    /// Whether `from` reached `to` (`None` for itself or an unknown name).
    pub fn open(&self, from: &str, to: &str) -> Option<bool> {
        let row = self.rows.iter().position(|name| name == from)?;
        let column = self.columns.iter().position(|name| name == to)?;
        self.cells[row][column]
    }

    /// The cells that were not open, as `from → to`.
    pub fn denied(&self) -> Vec<String> {
        let mut denied = Vec::new();
        for (row, cells) in self.rows.iter().zip(&self.cells) {
            for (column, cell) in self.columns.iter().zip(cells) {
                if *cell == Some(false) {
                    denied.push(format!("{row} → {column}"));
                }
            }
        }
        denied
    }

    /// The table: one row per source, one column per target, `open`, `DENIED` or `-`.
    pub fn to_table(&self) -> String {
        let width = self
            .columns
            .iter()
            .chain(&self.rows)
            .map(|name| name.len())
            .max()
            .unwrap_or(0)
            .max(8)
            + 2;
        let mut table = format!("{:<width$}", format!("TCP {}", self.port));
        for column in &self.columns {
            table.push_str(&format!("{column:<width$}"));
        }
        table = table.trim_end().to_owned();
        table.push('\n');
        for (row, cells) in self.rows.iter().zip(&self.cells) {
            let mut line = format!("{row:<width$}");
            for cell in cells {
                let text = match cell {
                    None => "-",
                    Some(true) => "open",
                    Some(false) => "DENIED",
                };
                line.push_str(&format!("{text:<width$}"));
            }
            table.push_str(line.trim_end());
            table.push('\n');
        }
        table
    }
}
