//! weft-operator beside the Tigera operator on one local control plane (`cargo bench -p
//! weft-operator --bench versus_tigera`). The Tigera binary comes from `TIGERA_OPERATOR` (a
//! path); its CRDs from its own `-manage-crds`, or from the YAML files of the directory in
//! `TIGERA_CRDS`. Without `TIGERA_OPERATOR` weft is measured alone, and the output says so.
//!
//! Cases (`WEFT_BENCH_CASES`, default `100,1000,1000:10000`) are kwok node counts, optionally
//! with pods of another workload; at each size Tigera runs first, then weft, each torn down
//! before the next. Printed: one row per operator and size, the ratios weft/Tigera, the
//! operators' own metrics for the no-op window, PASS or FAIL for each goal and case, and last the
//! line `ratio available=<x> rss=<x> requests=<x>` for the 100-node case. `cargo test` runs it
//! once, weft alone at 3 nodes (a smoke run).

#[allow(dead_code)]
mod common;

use std::path::PathBuf;

use anyhow::Context as _;
use common::measure::{Figures, TRIGGERS, measure};
use common::operators::Operator;
use common::{Case, benchmarking, cases, cluster, grow};

fn tigera() -> anyhow::Result<Option<Operator>> {
    let Some(binary) = std::env::var_os("TIGERA_OPERATOR").map(PathBuf::from) else {
        return Ok(None);
    };
    let meta = std::fs::metadata(&binary)
        .with_context(|| format!("TIGERA_OPERATOR={}: not a file", binary.display()))?;
    anyhow::ensure!(
        meta.is_file(),
        "TIGERA_OPERATOR={}: must be the path of the operator binary",
        binary.display()
    );
    let crds = std::env::var_os("TIGERA_CRDS").map(PathBuf::from);
    if let Some(dir) = &crds {
        anyhow::ensure!(
            dir.is_dir(),
            "TIGERA_CRDS={}: must be a directory of CRD YAML files",
            dir.display()
        );
    }
    Ok(Some(Operator::Tigera { binary, crds }))
}

fn ratio(weft: f64, tigera: f64) -> String {
    if tigera > 0.0 {
        format!("{:.2}", weft / tigera)
    } else {
        "n/a".into()
    }
}

fn print_tables(figures: &[Figures]) {
    println!(
        "| case | operator | apply → all objects applied | apply → Available | peak RSS | API requests per no-op (Installation annotation / DaemonSet label) | writes per no-op (same) | idle requests (same window, per trigger) | objects created |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        println!(
            "| {} | {} | {} | {:.2} s | {:.1} MiB | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {} |",
            f.case,
            f.operator,
            f.to_applied
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            f.to_available.as_secs_f64(),
            f.peak_rss_mib(),
            f.requests_per_noop,
            f.managed_requests_per_noop,
            f.writes_per_noop,
            f.managed_writes_per_noop,
            f.idle_per_noop,
            f.created
        );
    }
    println!();
    println!(
        "Own metrics over the {TRIGGERS} no-op triggers (per trigger), and the audit log's most frequent requests:"
    );
    println!();
    println!(
        "| case | operator | reconciles | by controller (total) | own request counter | top requests (total) |"
    );
    println!("|---|---|---:|---|---:|---|");
    for f in figures {
        println!(
            "| {} | {} | {:.2} | {} | {:.2} | {} |",
            f.case,
            f.operator,
            f.reconciles_per_noop,
            f.reconciles_by,
            f.own_requests_per_noop,
            f.top_requests
        );
    }
}

/// The goals weft/Tigera per case, each printed PASS or FAIL: apply → Available ≤ 0.3, peak
/// RSS ≤ 0.05, API requests per no-op ≤ 0.5 for each trigger.
fn print_goals(pairs: &[(&Figures, &Figures)]) {
    println!();
    println!("Goals (weft / Tigera):");
    for (weft, tigera) in pairs {
        let goals = [
            (
                "apply → Available ≤ 0.3",
                weft.to_available.as_secs_f64(),
                tigera.to_available.as_secs_f64(),
                0.3,
            ),
            (
                "peak RSS ≤ 0.05",
                weft.peak_rss_mib(),
                tigera.peak_rss_mib(),
                0.05,
            ),
            (
                "requests per no-op (Installation annotation) ≤ 0.5",
                weft.requests_per_noop,
                tigera.requests_per_noop,
                0.5,
            ),
            (
                "requests per no-op (DaemonSet label) ≤ 0.5",
                weft.managed_requests_per_noop,
                tigera.managed_requests_per_noop,
                0.5,
            ),
        ];
        for (what, weft_figure, tigera_figure, limit) in goals {
            let verdict = if tigera_figure > 0.0 && weft_figure / tigera_figure <= limit {
                "PASS"
            } else {
                "FAIL"
            };
            println!(
                "  {verdict} {}: {what} (ratio {})",
                weft.case,
                ratio(weft_figure, tigera_figure)
            );
        }
    }
}

fn pairs(figures: &[Figures]) -> Vec<(&Figures, &Figures)> {
    figures
        .chunks(2)
        .filter_map(|pair| match pair {
            [tigera, weft] => Some((weft, tigera)),
            _ => None,
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs this binary without --bench: a smoke run of weft alone at
    // 3 nodes, which catches a broken benchmark (figures not measurements, goals not judged).
    let benchmarking = benchmarking();
    let (tigera, default_cases) = if benchmarking {
        (tigera()?, "100,1000,1000:10000")
    } else {
        println!(
            "smoke run of the benchmark (cargo test): weft alone at 3 nodes, not measurements"
        );
        (None, "3")
    };
    let cases: Vec<Case> = cases("WEFT_BENCH_CASES", default_cases)?;
    if benchmarking && tigera.is_none() {
        eprintln!("TIGERA_OPERATOR is not set: measuring weft-operator alone");
    }
    let (cluster, client) = cluster().await?;
    let mut nodes = Vec::new();
    let mut figures = Vec::new();
    for case in cases {
        grow(&cluster, &client, &mut nodes, case).await?;
        for operator in tigera.iter().chain([&Operator::Weft]) {
            figures.push(measure(&cluster, &client, operator, case).await?);
        }
    }
    print_tables(&figures);
    if tigera.is_none() {
        if benchmarking {
            println!();
            println!(
                "tigera-operator not measured (TIGERA_OPERATOR is not set): weft-operator alone"
            );
        }
        return Ok(());
    }
    let pairs = pairs(&figures);
    print_goals(&pairs);
    println!();
    println!(
        "| case | available weft/tigera | peak RSS weft/tigera | requests per no-op weft/tigera (Installation annotation / DaemonSet label) |"
    );
    println!("|---|---:|---:|---:|");
    for (weft, tigera) in &pairs {
        println!(
            "| {} | {} | {} | {} / {} |",
            weft.case,
            ratio(
                weft.to_available.as_secs_f64(),
                tigera.to_available.as_secs_f64()
            ),
            ratio(weft.peak_rss_mib(), tigera.peak_rss_mib()),
            ratio(weft.requests_per_noop, tigera.requests_per_noop),
            ratio(
                weft.managed_requests_per_noop,
                tigera.managed_requests_per_noop
            )
        );
    }
    let headline = pairs
        .iter()
        .find(|(weft, _)| {
            weft.case
                == Case {
                    nodes: 100,
                    pods: 0,
                }
        })
        .or(pairs.first());
    if let Some((weft, tigera)) = headline {
        println!();
        if weft.case
            != (Case {
                nodes: 100,
                pods: 0,
            })
        {
            println!("(no 100-node case: the ratio line is for {})", weft.case);
        }
        println!(
            "ratio available={} rss={} requests={}",
            ratio(
                weft.to_available.as_secs_f64(),
                tigera.to_available.as_secs_f64()
            ),
            ratio(weft.peak_rss_mib(), tigera.peak_rss_mib()),
            ratio(weft.requests_per_noop, tigera.requests_per_noop)
        );
    }
    Ok(())
}
