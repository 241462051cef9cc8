//! Allocation over a locked store: one address per range set, round-robin from the last address
//! handed out, idempotent for an attachment that already holds addresses.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::range::{RangeSet, describe_set, walk};
use super::store::{LockedStore, Record, StoreError};
use crate::env::Attachment;

/// An address handed to an attachment, with the subnet it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// The address with its range's prefix length.
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// Why no allocation was made.
#[derive(Debug, thiserror::Error)]
pub enum AllocateError {
    #[error("no free address in {ranges}")]
    Exhausted { ranges: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Allocates one address from each range set for `owner`, or returns what `owner` already holds.
pub fn allocate(
    store: &LockedStore,
    sets: &[RangeSet],
    owner: &Attachment,
) -> Result<Vec<Allocation>, AllocateError> {
    let records = store.records()?;
    let held: Vec<IpAddr> = records
        .iter()
        .filter(|record| &record.owner == owner)
        .map(|record| record.ip)
        .collect();
    if !held.is_empty() {
        return Ok(sets
            .iter()
            .filter_map(|set| {
                held.iter()
                    .find(|ip| set.iter().any(|range| range.contains(**ip)))
            })
            .filter_map(|ip| allocation_for(sets, *ip))
            .collect());
    }
    let mut used: HashSet<IpAddr> = records.iter().map(|record| record.ip).collect();
    let mut made: Vec<Record> = Vec::with_capacity(sets.len());
    let mut allocations = Vec::with_capacity(sets.len());
    for (index, set) in sets.iter().enumerate() {
        let free = walk(set, store.last_reserved(index)).find(|ip| !used.contains(ip));
        let Some(ip) = free else {
            for record in &made {
                store.remove(record)?;
            }
            return Err(AllocateError::Exhausted {
                ranges: describe_set(set),
            });
        };
        let record = Record {
            ip,
            owner: owner.clone(),
        };
        store.insert(&record)?;
        store.set_last_reserved(index, ip)?;
        used.insert(ip);
        made.push(record);
        allocations.extend(allocation_for(sets, ip));
    }
    Ok(allocations)
}

/// Releases every address `owner` holds; returns how many were released (0 is not an error).
pub fn release(store: &LockedStore, owner: &Attachment) -> Result<usize, StoreError> {
    let mut released = 0;
    for record in store
        .records()?
        .into_iter()
        .filter(|record| &record.owner == owner)
    {
        store.remove(&record)?;
        released += 1;
    }
    Ok(released)
}

/// Releases every address whose owner is not in `valid`, except the tunnel's (the runtime that
/// sends GC knows only its containers); returns the released records.
pub fn collect_garbage(
    store: &LockedStore,
    valid: &[Attachment],
) -> Result<Vec<Record>, StoreError> {
    let tunnel = super::tunnel_owner();
    let valid: HashSet<&Attachment> = valid.iter().chain([&tunnel]).collect();
    let mut released = Vec::new();
    for record in store
        .records()?
        .into_iter()
        .filter(|record| !valid.contains(&record.owner))
    {
        store.remove(&record)?;
        released.push(record);
    }
    Ok(released)
}

/// For STATUS: the first range set without a free address, described, if any.
pub fn first_exhausted_set(
    store: &LockedStore,
    sets: &[RangeSet],
) -> Result<Option<String>, StoreError> {
    let used: HashSet<IpAddr> = store
        .records()?
        .into_iter()
        .map(|record| record.ip)
        .collect();
    Ok(sets
        .iter()
        .find(|set| {
            let capacity: u128 = set
                .iter()
                .map(|range| range.size())
                .fold(0, u128::saturating_add);
            let taken = used
                .iter()
                .filter(|ip| set.iter().any(|range| range.contains(**ip)))
                .count() as u128;
            taken >= capacity
        })
        .map(describe_set))
}

fn allocation_for(sets: &[RangeSet], ip: IpAddr) -> Option<Allocation> {
    let range = sets.iter().flatten().find(|range| range.contains(ip))?;
    Some(Allocation {
        address: IpNet::new(ip, range.subnet.prefix_len()).ok()?,
        gateway: range.gateway,
    })
}

#[cfg(test)]
mod tests {
    use super::super::range::Range;
    use super::*;

    fn owner(id: &str) -> Attachment {
        Attachment {
            container_id: id.into(),
            ifname: "eth0".into(),
        }
    }

    fn sets(cidrs: &[&str]) -> Vec<RangeSet> {
        cidrs
            .iter()
            .map(|cidr| vec![Range::host_local(cidr.parse().unwrap()).unwrap()])
            .collect()
    }

    #[test]
    fn allocates_distinct_addresses_then_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let sets = sets(&["10.88.200.0/30"]);
        let first = allocate(&store, &sets, &owner("a")).unwrap();
        let second = allocate(&store, &sets, &owner("b")).unwrap();
        assert_eq!(first[0].address.to_string(), "10.88.200.1/30");
        assert_eq!(second[0].address.to_string(), "10.88.200.2/30");
        let error = allocate(&store, &sets, &owner("c")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no free address in 10.88.200.0/30 (10.88.200.1-10.88.200.2)"
        );
        assert_eq!(
            first_exhausted_set(&store, &sets).unwrap().as_deref(),
            Some("10.88.200.0/30 (10.88.200.1-10.88.200.2)")
        );
    }

    #[test]
    fn same_owner_gets_the_same_addresses_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let sets = sets(&["10.88.201.0/29", "fd00:88:201::/125"]);
        let first = allocate(&store, &sets, &owner("a")).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(allocate(&store, &sets, &owner("a")).unwrap(), first);
        assert_eq!(store.records().unwrap().len(), 2);
    }

    #[test]
    fn released_addresses_are_reused_only_after_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let sets = sets(&["10.88.202.0/29"]);
        let a = allocate(&store, &sets, &owner("a")).unwrap();
        assert_eq!(release(&store, &owner("a")).unwrap(), 1);
        assert_eq!(release(&store, &owner("a")).unwrap(), 0);
        let b = allocate(&store, &sets, &owner("b")).unwrap();
        assert_ne!(
            a, b,
            "round-robin must not hand the just-released address out again"
        );
    }

    #[test]
    fn failed_second_set_rolls_back_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let full = sets(&["10.88.203.0/30"]);
        allocate(&store, &full, &owner("x")).unwrap();
        allocate(&store, &full, &owner("y")).unwrap();
        let both = sets(&["10.88.204.0/30", "10.88.203.0/30"]);
        assert!(matches!(
            allocate(&store, &both, &owner("z")),
            Err(AllocateError::Exhausted { .. })
        ));
        assert_eq!(store.records().unwrap().len(), 2);
    }

    #[test]
    fn garbage_collection_keeps_only_valid_attachments() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let sets = sets(&["10.88.205.0/28"]);
        for id in ["a", "b", "c"] {
            allocate(&store, &sets, &owner(id)).unwrap();
        }
        let released = collect_garbage(&store, &[owner("b")]).unwrap();
        assert_eq!(released.len(), 2);
        let left = store.records().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].owner, owner("b"));
    }

    #[test]
    fn garbage_collection_never_frees_the_tunnel_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = LockedStore::open(dir.path(), "net").unwrap();
        let sets = sets(&["10.88.206.0/28"]);
        let tunnel = allocate(&store, &sets, &super::super::tunnel_owner()).unwrap();
        allocate(&store, &sets, &owner("gone")).unwrap();
        let released = collect_garbage(&store, &[]).unwrap();
        assert_eq!(released.len(), 1, "{released:?}");
        assert_eq!(released[0].owner, owner("gone"));
        let left = store.records().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].owner, super::super::tunnel_owner());
        assert_eq!(left[0].ip, tunnel[0].address.addr());
    }
}
