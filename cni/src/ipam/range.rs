//! Address ranges: a subnet with the first and last assignable address, and the arithmetic to
//! walk a range set round-robin from the last address handed out.

use std::net::IpAddr;

use ipnet::IpNet;

/// One range of assignable addresses inside a subnet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    /// Excluded from allocation when set.
    pub gateway: Option<IpAddr>,
}

/// Ranges one address is taken from (the first range with a free address wins).
pub type RangeSet = Vec<Range>;

impl Range {
    /// Host-local semantics: the subnet without its first (network) and last address.
    pub fn host_local(subnet: IpNet) -> Option<Self> {
        let first = to_number(subnet.network()) + 1;
        let last = to_number(subnet.broadcast()).checked_sub(1)?;
        (first <= last).then(|| Self {
            subnet,
            start: from_number(first, subnet.addr().is_ipv6()),
            end: from_number(last, subnet.addr().is_ipv6()),
            gateway: None,
        })
    }

    /// Pool-block semantics: every address of the block is a pod address (pods get /32 or
    /// /128 addresses and routes, blocks are not link subnets).
    pub fn whole_block(block: IpNet) -> Self {
        Self {
            subnet: block,
            start: block.network(),
            end: block.broadcast(),
            gateway: None,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.start.is_ipv6()
            && (to_number(self.start)..=to_number(self.end)).contains(&to_number(ip))
    }

    pub fn is_ipv6(&self) -> bool {
        self.start.is_ipv6()
    }

    /// Number of assignable addresses (saturating; a /64 has "very many").
    pub fn size(&self) -> u128 {
        let excluded = u128::from(self.gateway.is_some_and(|gateway| self.contains(gateway)));
        (to_number(self.end) - to_number(self.start) + 1).saturating_sub(excluded)
    }

    /// Human form for messages: `10.88.0.0/24 (10.88.0.1-10.88.0.254)`.
    pub fn describe(&self) -> String {
        format!("{} ({}-{})", self.subnet, self.start, self.end)
    }
}

/// Describes a whole set for messages.
pub fn describe_set(set: &RangeSet) -> String {
    set.iter()
        .map(Range::describe)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Walks the set once, starting right after `last` (or at the beginning when `last` is not in
/// the set), yielding every assignable address except gateways, wrapping around.
pub fn walk(set: &RangeSet, last: Option<IpAddr>) -> impl Iterator<Item = IpAddr> + '_ {
    let start_range = last.and_then(|ip| set.iter().position(|range| range.contains(ip)));
    let (first_range, offset) = match (start_range, last) {
        (Some(index), Some(ip)) => (index, Some(to_number(ip))),
        _ => (0, None),
    };
    let count = set.len();
    // Ranges in order from the one holding `last`; that range again at the end for the part
    // before `last`.
    (0..=count).flat_map(move |step| {
        let index = (first_range + step) % count.max(1);
        let range = &set[index.min(count.saturating_sub(1))];
        let (low, high) = (to_number(range.start), to_number(range.end));
        let (from, to) = match (step, offset) {
            (0, Some(last)) => (last.saturating_add(1), high),
            (step, Some(last)) if step == count => (low, last.min(high)),
            (step, None) if step == count => (1, 0),
            _ => (low, high),
        };
        let ipv6 = range.is_ipv6();
        let gateway = range.gateway;
        (from..=to)
            .map(move |number| from_number(number, ipv6))
            .filter(move |ip| Some(*ip) != gateway)
    })
}

pub fn to_number(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

pub fn from_number(number: u128, ipv6: bool) -> IpAddr {
    if ipv6 {
        IpAddr::from(number.to_be_bytes())
    } else {
        IpAddr::from((number as u32).to_be_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cidrs: &[&str]) -> RangeSet {
        cidrs
            .iter()
            .map(|cidr| Range::host_local(cidr.parse().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn walk_from_start_covers_every_address_once() {
        let set = set(&["10.88.0.0/29", "10.88.1.0/30"]);
        let all: Vec<String> = walk(&set, None).map(|ip| ip.to_string()).collect();
        assert_eq!(
            all,
            [
                "10.88.0.1",
                "10.88.0.2",
                "10.88.0.3",
                "10.88.0.4",
                "10.88.0.5",
                "10.88.0.6",
                "10.88.1.1",
                "10.88.1.2"
            ]
        );
    }

    #[test]
    fn walk_resumes_after_last_and_wraps() {
        let set = set(&["10.88.0.0/29", "10.88.1.0/30"]);
        let all: Vec<String> = walk(&set, Some("10.88.0.5".parse().unwrap()))
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(
            all,
            [
                "10.88.0.6",
                "10.88.1.1",
                "10.88.1.2",
                "10.88.0.1",
                "10.88.0.2",
                "10.88.0.3",
                "10.88.0.4",
                "10.88.0.5"
            ]
        );
    }

    #[test]
    fn walk_skips_the_gateway_and_ignores_a_foreign_last() {
        let mut set = set(&["10.88.0.0/29"]);
        set[0].gateway = Some("10.88.0.1".parse().unwrap());
        let all: Vec<String> = walk(&set, Some("192.0.2.1".parse().unwrap()))
            .map(|ip| ip.to_string())
            .collect();
        assert_eq!(
            all,
            [
                "10.88.0.2",
                "10.88.0.3",
                "10.88.0.4",
                "10.88.0.5",
                "10.88.0.6"
            ]
        );
        assert_eq!(set[0].size(), 5);
    }

    #[test]
    fn whole_blocks_include_first_and_last_address() {
        let block = Range::whole_block("10.88.4.0/30".parse().unwrap());
        let all: Vec<String> = walk(&vec![block], None).map(|ip| ip.to_string()).collect();
        assert_eq!(all, ["10.88.4.0", "10.88.4.1", "10.88.4.2", "10.88.4.3"]);
    }

    #[test]
    fn ipv6_ranges_walk_too() {
        let set = set(&["fd00:88::/126"]);
        let all: Vec<String> = walk(&set, None).map(|ip| ip.to_string()).collect();
        assert_eq!(all, ["fd00:88::1", "fd00:88::2"]);
    }

    #[test]
    fn tiny_subnets_have_no_host_local_range() {
        assert!(Range::host_local("10.88.0.0/31".parse().unwrap()).is_none());
        assert!(Range::host_local("10.88.0.0/32".parse().unwrap()).is_none());
    }
}
