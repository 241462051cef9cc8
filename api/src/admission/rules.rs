//! The CRDs' CEL rules (`x-kubernetes-validations`) as Rust, one function per rule text, so
//! objects are judged offline exactly as the API server judges them. [`rule`] finds the function
//! for a rule's text; a rule without one is reported by [`super::unimplemented_rules`], which a
//! test requires to be empty, so a new rule cannot be added to a schema without its offline twin.
//! Transition rules (those reading `oldSelf`) need the stored object and are left to the server.

use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value;

use crate::{cel, policy_cel};

/// A rule evaluated on the value it is attached to (`self`): true when the value passes.
pub type Rule = fn(&Value) -> bool;

/// The offline twin of the CEL rule `text`, if there is one.
pub fn rule(text: &str) -> Option<Rule> {
    let text = normalise(text);
    let table: [(&str, Rule); 21] = [
        (cel::IS_CIDR, |v| str_of(v).is_some_and(is_cidr)),
        (cel::CIDR_MASKED, |v| {
            str_of(v)
                .and_then(cidr)
                .is_none_or(|net| net.trunc() == net)
        }),
        (cel::CIDR_IPV4, |v| {
            str_of(v)
                .and_then(cidr)
                .is_none_or(|net| net.addr().is_ipv4())
        }),
        (cel::BLOCK_SIZE_IN_FAMILY, block_size_in_family),
        (cel::BLOCK_SIZE_WITHIN_POOL, block_size_within_pool),
        (cel::POOL_CIDRS_UNIQUE, pool_cidrs_unique),
        (cel::POOLS_DISJOINT, pools_disjoint),
        (cel::OS_IS_LINUX, |v| {
            v.get(crate::installation_overrides::OS_LABEL)
                .is_none_or(|os| os == crate::installation_overrides::LINUX)
        }),
        (cel::NOT_NODE_HEALTH_PORT, |v| {
            int(v) != Some(i64::from(crate::installation::NODE_HEALTH_PORT))
        }),
        ("isIP(self)", |v| str_of(v).is_some_and(is_ip)),
        ("self.all(c, isCIDR(c))", |v| {
            all(v, |c| str_of(c).is_some_and(is_cidr))
        }),
        (
            "[has(self.firstFound) && self.firstFound, has(self.interface), has(self.cidrs), \
             has(self.canReach)].filter(x, x).size() <= 1",
            at_most_one_autodetection,
        ),
        ("self.metadata.name == 'default'", |v| {
            v.pointer("/metadata/name") == Some(&Value::from("default"))
        }),
        (
            "!isCIDR(self.spec.cidr) || cidr(self.spec.cidr).ip().family() != 4 || \
             self.metadata.name == self.spec.cidr.replace('.', '-').replace('/', '-')",
            block_name_from_cidr,
        ),
        (policy_cel::PROTOCOL, protocol),
        (policy_cel::PORTS_NEED_PROTOCOL, ports_need_protocol),
        (policy_cel::ICMP_NEEDS_PROTOCOL, icmp_needs_protocol),
        (policy_cel::PORTS, |v| all(v, port_form)),
        (policy_cel::PORT_RANGES_ORDERED, |v| {
            all(v, port_range_ordered)
        }),
        (policy_cel::NETS, |v| {
            all(v, |n| str_of(n).is_some_and(|t| is_cidr(t) || is_ip(t)))
        }),
        ("!has(self.code) || has(self.type)", |v| {
            !has(v, "code") || has(v, "type")
        }),
    ];
    table
        .into_iter()
        .find(|(known, _)| normalise(known) == text)
        .map(|(_, function)| function)
}

/// Rule texts compared with white space folded (the YAML may wrap them).
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether `text` is a transition rule (it compares with the stored object).
pub fn is_transition(text: &str) -> bool {
    text.contains("oldSelf")
}

fn str_of(value: &Value) -> Option<&str> {
    value.as_str()
}

fn has(value: &Value, field: &str) -> bool {
    value.get(field).is_some_and(|v| !v.is_null())
}

fn all(value: &Value, check: impl Fn(&Value) -> bool) -> bool {
    value.as_array().is_none_or(|items| items.iter().all(check))
}

/// The CEL `isCIDR`: an address and a prefix length that fits it.
fn is_cidr(text: &str) -> bool {
    cidr(text).is_some()
}

fn cidr(text: &str) -> Option<IpNet> {
    text.contains('/').then(|| text.parse().ok()).flatten()
}

fn is_ip(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

fn int(value: &Value) -> Option<i64> {
    value.as_i64()
}

fn block_size_in_family(pool: &Value) -> bool {
    let Some(size) = pool.get("blockSize").and_then(int) else {
        return true;
    };
    match pool.get("cidr").and_then(str_of).and_then(cidr) {
        Some(net) if net.addr().is_ipv4() => (20..=32).contains(&size),
        Some(_) => (116..=128).contains(&size),
        None => true,
    }
}

fn block_size_within_pool(pool: &Value) -> bool {
    let Some(net) = pool.get("cidr").and_then(str_of).and_then(cidr) else {
        return true;
    };
    let default = if net.addr().is_ipv4() { 26 } else { 122 };
    let size = pool.get("blockSize").and_then(int).unwrap_or(default);
    size >= i64::from(net.prefix_len())
}

fn pool_cidrs(pools: &Value) -> Vec<(&Value, &Value)> {
    pools
        .as_array()
        .into_iter()
        .flatten()
        .map(|pool| {
            (
                pool.get("name").unwrap_or(&Value::Null),
                pool.get("cidr").unwrap_or(&Value::Null),
            )
        })
        .collect()
}

fn pool_cidrs_unique(pools: &Value) -> bool {
    let cidrs: Vec<&Value> = pool_cidrs(pools).into_iter().map(|(_, c)| c).collect();
    cidrs
        .iter()
        .all(|a| cidrs.iter().filter(|b| *b == a).count() == 1)
}

fn pools_disjoint(pools: &Value) -> bool {
    let pools = pool_cidrs(pools);
    pools.iter().all(|(name_a, cidr_a)| {
        pools.iter().all(|(name_b, cidr_b)| {
            let (Some(a), Some(b)) = (str_of(cidr_a).and_then(cidr), str_of(cidr_b).and_then(cidr))
            else {
                return true;
            };
            name_a == name_b
                || cidr_a == cidr_b
                || a.addr().is_ipv4() != b.addr().is_ipv4()
                || !(a.contains(&b) || b.contains(&a))
        })
    })
}

fn at_most_one_autodetection(method: &Value) -> bool {
    let first_found = method.get("firstFound").and_then(Value::as_bool) == Some(true);
    let chosen = [
        first_found,
        has(method, "interface"),
        has(method, "cidrs"),
        has(method, "canReach"),
    ];
    chosen.into_iter().filter(|x| *x).count() <= 1
}

fn block_name_from_cidr(block: &Value) -> bool {
    let Some(text) = block.pointer("/spec/cidr").and_then(str_of) else {
        return true;
    };
    match cidr(text) {
        Some(net) if net.addr().is_ipv4() => {
            block.pointer("/metadata/name").and_then(str_of)
                == Some(text.replace(['.', '/'], "-").as_str())
        }
        _ => true,
    }
}

const PROTOCOL_NAMES: [&str; 6] = ["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"];

fn protocol(value: &Value) -> bool {
    match value {
        Value::Number(_) => int(value).is_some_and(|n| (1..=255).contains(&n)),
        Value::String(name) => PROTOCOL_NAMES.contains(&name.as_str()),
        _ => false,
    }
}

/// The rule's protocol is one of `numbers` or `names`.
fn protocol_in(rule: &Value, numbers: &[i64], names: &[&str]) -> bool {
    match rule.get("protocol") {
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| numbers.contains(&n)),
        Some(Value::String(name)) => names.contains(&name.as_str()),
        _ => false,
    }
}

fn ports_need_protocol(rule: &Value) -> bool {
    let with_ports = ["source", "destination"].iter().any(|side| {
        rule.get(*side)
            .is_some_and(|entity| has(entity, "ports") || has(entity, "notPorts"))
    });
    !with_ports || protocol_in(rule, &[6, 17, 132, 136], &["TCP", "UDP", "SCTP", "UDPLite"])
}

fn icmp_needs_protocol(rule: &Value) -> bool {
    let with_icmp = has(rule, "icmp") || has(rule, "notIcmp");
    !with_icmp || protocol_in(rule, &[1, 58], &["ICMP", "ICMPv6"])
}

/// `^[0-9]{1,5}(:[0-9]{1,5})?$`: the digit groups of a numeric port or range.
fn numeric_port(text: &str) -> Option<Vec<&str>> {
    let groups: Vec<&str> = text.split(':').collect();
    let digits = |g: &&str| (1..=5).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit());
    (groups.len() <= 2 && groups.iter().all(digits)).then_some(groups)
}

fn port_form(port: &Value) -> bool {
    match port {
        Value::Number(_) => int(port).is_some_and(|n| (1..=65535).contains(&n)),
        Value::String(text) => {
            let name = (1..=15).contains(&text.len())
                && text
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !text.starts_with('-')
                && !text.ends_with('-')
                && text.bytes().any(|b| b.is_ascii_lowercase())
                && !text.contains("--");
            numeric_port(text).is_some() || name
        }
        _ => false,
    }
}

fn port_range_ordered(port: &Value) -> bool {
    let Some(groups) = str_of(port).and_then(numeric_port) else {
        return true;
    };
    let ends: Vec<i64> = groups.iter().filter_map(|g| g.parse().ok()).collect();
    let (first, last) = (ends[0], ends[ends.len() - 1]);
    first >= 1 && first <= last && last <= 65535
}
