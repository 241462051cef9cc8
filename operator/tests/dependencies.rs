//! The operator links the selector grammar, not the policy engine: its normal dependency tree
//! holds weft-selector and no weft-policy (nft compiler, evaluator, policy model).

use std::process::Command;

#[test]
fn the_operator_depends_on_the_selector_grammar_alone() {
    let output = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--locked",
            "-p",
            "weft-operator",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "cargo tree: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert!(crates.contains(&"weft-selector"), "{tree}");
    assert!(!crates.contains(&"weft-policy"), "{tree}");
}
