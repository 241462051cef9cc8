//! weft-operator alone on a local control plane with 100 and 1,000 kwok nodes (`cargo bench -p
//! weft-operator --bench install`; sizes from `WEFT_BENCH_NODES`, `NODES[:PODS]` each, default
//! `100,1000`). The measurement is the one `versus_tigera` makes (`common::measure`): apply →
//! all objects applied and → Available, peak RSS, and API requests per no-op reconcile counted
//! in the API server's audit log by the operator's user.

#[allow(dead_code)]
mod common;

use common::measure::measure;
use common::operators::Operator;
use common::{benchmarking, cases, cluster, grow};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo test --all-targets` runs this binary without --bench: a smoke run at 3 nodes, which
    // catches a broken benchmark (the figures are not measurements).
    let default_cases = if benchmarking() {
        "100,1000"
    } else {
        println!("smoke run of the benchmark (cargo test): 3 nodes, not measurements");
        "3"
    };
    let (cluster, client) = cluster().await?;
    let mut nodes = Vec::new();
    let mut figures = Vec::new();
    for case in cases("WEFT_BENCH_NODES", default_cases)? {
        grow(&cluster, &client, &mut nodes, case).await?;
        figures.push(measure(&cluster, &client, &Operator::Weft, case).await?);
    }
    println!(
        "| case | apply → all objects applied | apply → Available | operator peak RSS | API requests per no-op reconcile (Installation annotation / DaemonSet label) | writes per no-op reconcile (same) | reconciles per trigger |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for f in figures {
        println!(
            "| {} | {} | {:.2} s | {:.1} MiB | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} |",
            f.case,
            f.to_applied
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            f.to_available.as_secs_f64(),
            f.peak_rss_mib(),
            f.requests_per_noop,
            f.managed_requests_per_noop,
            f.writes_per_noop,
            f.managed_writes_per_noop,
            f.reconciles_per_noop
        );
    }
    Ok(())
}
