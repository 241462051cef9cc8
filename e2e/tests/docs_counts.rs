//! The upstream suite counts the docs state ("45 of 45") must be the counts the kind suite
//! enforces: `e2e/kind/conformance.sh` fails a run of fewer specs than its floor, so a passing run
//! ran exactly what the docs claim only when the two agree. A changed suite (a new upstream
//! version, a skip added or removed) must change both.

use std::collections::BTreeMap;
use std::path::Path;

const DOCS: [&str; 2] = ["README.md", "e2e/kind/README.md"];

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Each suite of conformance.sh (`netpol`, `sig-network`) with its `specs=` floor.
fn floors(script: &str) -> BTreeMap<String, u32> {
    script
        .lines()
        .filter_map(|line| {
            let (suite, rest) = line.trim().split_once(") ")?;
            let specs = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("specs="))?;
            Some((suite.to_owned(), specs.parse().ok()?))
        })
        .collect()
}

/// Every "N of M" in `text` with the suite named last in the 160 characters before it, if any:
/// `netpol` for NetworkPolicy, `sig-network` for Conformance.
fn stated_counts(text: &str) -> Vec<(String, u32, u32)> {
    let words: Vec<(usize, &str)> = text
        .split_whitespace()
        .map(|w| (offset(text, w), w))
        .collect();
    let mut found = Vec::new();
    for window in words.windows(3) {
        let [(at, n), (_, of), (_, m)] = window else {
            continue;
        };
        let number = |w: &str| {
            w.trim_matches(|c: char| !c.is_ascii_digit())
                .parse::<u32>()
                .ok()
        };
        let (Some(n), "of", Some(m)) = (number(n), *of, number(m)) else {
            continue;
        };
        let before = &text[at.saturating_sub(160)..*at];
        let netpol = before.rfind("NetworkPolicy");
        let conformance = before.rfind("Conformance");
        let suite = match (netpol, conformance) {
            (Some(a), Some(b)) if a > b => "netpol",
            (_, Some(_)) => "sig-network",
            (Some(_), None) => "netpol",
            (None, None) => continue,
        };
        found.push((suite.to_owned(), n, m));
    }
    found
}

fn offset(text: &str, word: &str) -> usize {
    word.as_ptr() as usize - text.as_ptr() as usize
}

#[test]
fn suite_counts_in_the_docs_are_the_floors_the_kind_suite_enforces() {
    let floors = floors(&repo_file("e2e/kind/conformance.sh"));
    assert_eq!(
        floors.keys().map(String::as_str).collect::<Vec<_>>(),
        ["all", "netpol", "sig-network"],
        "conformance.sh's suites"
    );
    assert_eq!(
        floors["all"],
        floors["netpol"] + floors["sig-network"],
        "all = netpol + sig-network"
    );
    let mut checked = 0;
    for doc in DOCS {
        for (suite, n, m) in stated_counts(&repo_file(doc)) {
            let floor = floors[&suite];
            assert!(
                n == floor && m == floor,
                "{doc} states {n} of {m} for the {suite} suite; conformance.sh enforces {floor} \
                 (change both together)"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected the docs to state both suites' counts, found {checked}"
    );
}

#[test]
fn a_count_that_differs_from_the_floor_is_found() {
    let text = "the upstream `[Feature:NetworkPolicy]` suite 44 of 45; sig-network `[Conformance]` \
                last ran 47 of 47, and 3 of the 48 were skipped";
    assert_eq!(
        stated_counts(text),
        [
            ("netpol".to_owned(), 44, 45),
            ("sig-network".to_owned(), 47, 47)
        ]
    );
}
