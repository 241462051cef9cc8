//! The operators' own Prometheus metrics, read over plain HTTP from their metrics address.

use std::collections::BTreeMap;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Samples by full series name (`name{labels}`), from the text exposition format.
pub type Samples = BTreeMap<String, f64>;

/// Scrapes `http://127.0.0.1:{port}/metrics`.
pub async fn scrape(port: u16) -> anyhow::Result<Samples> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect())
}

/// The sum of the series whose name starts with `prefix` and, when `any` is not empty, whose
/// labels contain one of `any` (e.g. `verb="GET"`).
pub fn sum(samples: &Samples, prefix: &str, any: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .filter(|(name, _)| any.is_empty() || any.iter().any(|label| name.contains(label)))
        .map(|(_, value)| value)
        .sum()
}

/// How much each series starting with `prefix` grew from `before` to `after`, grouped by the
/// value of `label` (series without it are grouped under `-`), largest first.
pub fn growth_by(
    before: &Samples,
    after: &Samples,
    prefix: &str,
    label: &str,
) -> Vec<(String, f64)> {
    let mut groups: BTreeMap<String, f64> = BTreeMap::new();
    for (name, value) in after.iter().filter(|(name, _)| name.starts_with(prefix)) {
        let grown = value - before.get(name).copied().unwrap_or(0.0);
        let key = name
            .split_once(&format!("{label}=\""))
            .and_then(|(_, rest)| rest.split_once('"'))
            .map_or("-", |(value, _)| value);
        *groups.entry(key.to_owned()).or_default() += grown;
    }
    let mut groups: Vec<(String, f64)> = groups.into_iter().filter(|(_, v)| *v > 0.0).collect();
    groups.sort_by(|a, b| b.1.total_cmp(&a.1));
    groups
}
