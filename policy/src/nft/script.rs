//! nft command scripts: the full replacement of the table, and the incremental diff between two
//! compiled states. Both are meant for one `nft -f` run, which nft applies as one transaction.

use std::collections::BTreeSet;
use std::fmt::Write;

use super::{NamedSet, Ruleset};

/// Size of an incremental change, for logs and benchmarks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The nft commands, one per line.
    pub script: String,
    pub elements_added: usize,
    pub elements_deleted: usize,
    pub chains_rewritten: usize,
    pub chains_added: usize,
    pub chains_deleted: usize,
    pub sets_added: usize,
    pub sets_deleted: usize,
}

impl Change {
    /// Whether the two states were the same.
    pub fn is_empty(&self) -> bool {
        self.script.is_empty()
    }
}

impl Ruleset {
    /// Deletes the table if present and creates it afresh, in one transaction.
    pub fn full_script(&self) -> String {
        let empty = Ruleset {
            table: self.table.clone(),
            sets: Default::default(),
            chains: Default::default(),
        };
        let table = format!("inet {}", self.table);
        format!(
            "add table {table}\ndelete table {table}\nadd table {table}\n{}",
            diff(&empty, self).script
        )
    }
}

/// The commands that turn `old` into `new` (both for the same table).
pub fn diff(old: &Ruleset, new: &Ruleset) -> Change {
    let table = format!("inet {}", new.table);
    let mut change = Change::default();
    let mut out = String::new();

    for (name, set) in &new.sets {
        if !old.sets.contains_key(name) {
            let _ = writeln!(
                out,
                "add {} {table} {name} {{ {} }}",
                set.keyword(),
                set.declaration
            );
            change.sets_added += 1;
        }
    }
    for (name, chain) in &new.chains {
        if !old.chains.contains_key(name) {
            let _ = match &chain.hook {
                Some(hook) => writeln!(out, "add chain {table} {name} {{ {hook} }}"),
                None => writeln!(out, "add chain {table} {name}"),
            };
            change.chains_added += 1;
        }
    }
    // Plain sets first, so rules added below find their members; maps last, since their
    // elements jump to chains that must hold their rules first.
    let (maps, plain): (Vec<_>, Vec<_>) = new.sets.iter().partition(|(_, set)| set.is_map());
    for (name, set) in &plain {
        let added = added_elements(old.sets.get(*name), set);
        change.elements_added += added.len();
        write_elements(&mut out, "add", &table, name, &added);
    }
    for (name, chain) in &new.chains {
        let previous = old.chains.get(name);
        if previous.is_some_and(|p| p.rules == chain.rules) {
            continue;
        }
        if previous.is_some() {
            let _ = writeln!(out, "flush chain {table} {name}");
            change.chains_rewritten += 1;
        }
        for rule in &chain.rules {
            let _ = writeln!(out, "add rule {table} {name} {rule}");
        }
    }
    for (name, set) in &maps {
        let old_set = old.sets.get(*name);
        let removed = removed_elements(old_set, Some(*set));
        let keys: Vec<String> = removed.iter().map(|e| map_key(e)).collect();
        change.elements_deleted += keys.len();
        write_elements(&mut out, "delete", &table, name, &keys);
        let added = added_elements(old_set, set);
        change.elements_added += added.len();
        write_elements(&mut out, "add", &table, name, &added);
    }
    for (name, set) in &old.sets {
        if !new.sets.contains_key(name) || set.is_map() {
            continue;
        }
        let removed = removed_elements(Some(set), new.sets.get(name));
        change.elements_deleted += removed.len();
        write_elements(&mut out, "delete", &table, name, &removed);
    }
    for (name, _) in old
        .chains
        .iter()
        .filter(|(n, _)| !new.chains.contains_key(*n))
    {
        let _ = writeln!(out, "flush chain {table} {name}");
    }
    for (name, _) in old
        .chains
        .iter()
        .filter(|(n, _)| !new.chains.contains_key(*n))
    {
        let _ = writeln!(out, "delete chain {table} {name}");
        change.chains_deleted += 1;
    }
    for (name, set) in old.sets.iter().filter(|(n, _)| !new.sets.contains_key(*n)) {
        let _ = writeln!(out, "delete {} {table} {name}", set.keyword());
        change.sets_deleted += 1;
    }
    change.script = out;
    change
}

impl NamedSet {
    fn is_map(&self) -> bool {
        self.declaration.contains(" : ")
    }

    fn keyword(&self) -> &'static str {
        if self.is_map() { "map" } else { "set" }
    }
}

fn added_elements(old: Option<&NamedSet>, new: &NamedSet) -> Vec<String> {
    let empty = BTreeSet::new();
    let old = old.map_or(&empty, |s| &s.elements);
    new.elements.difference(old).cloned().collect()
}

/// Elements of `old` missing from `new`; for a map, also those whose verdict changed.
fn removed_elements(old: Option<&NamedSet>, new: Option<&NamedSet>) -> Vec<String> {
    let empty = BTreeSet::new();
    let old = old.map_or(&empty, |s| &s.elements);
    let new = new.map_or(&empty, |s| &s.elements);
    old.difference(new).cloned().collect()
}

fn map_key(element: &str) -> String {
    element
        .split_once(" : ")
        .map_or(element, |(key, _)| key)
        .to_string()
}

/// Writes elements in batches, keeping each command line a reasonable length.
fn write_elements(out: &mut String, verb: &str, table: &str, set: &str, elements: &[String]) {
    for batch in elements.chunks(512) {
        let _ = writeln!(
            out,
            "{verb} element {table} {set} {{ {} }}",
            batch.join(", ")
        );
    }
}
