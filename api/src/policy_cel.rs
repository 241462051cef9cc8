//! CEL expressions and messages of the policy CRDs' rules, ports, protocols and nets.

/// On a protocol (int or string).
pub const PROTOCOL: &str = "type(self) == int ? (self >= 1 && self <= 255) : \
     self in ['TCP', 'UDP', 'ICMP', 'ICMPv6', 'SCTP', 'UDPLite']";
pub const PROTOCOL_MSG: &str =
    "must be TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a protocol number between 1 and 255";

/// On a rule: ports need a protocol that has ports (by name or by number).
pub const PORTS_NEED_PROTOCOL: &str = "!((has(self.source) && (has(self.source.ports) || has(self.source.notPorts))) || \
     (has(self.destination) && (has(self.destination.ports) || has(self.destination.notPorts)))) || \
     (has(self.protocol) && (type(self.protocol) == int ? self.protocol in [6, 17, 132, 136] \
     : self.protocol in ['TCP', 'UDP', 'SCTP', 'UDPLite']))";
pub const PORTS_NEED_PROTOCOL_MSG: &str =
    "ports and notPorts require protocol TCP, UDP, SCTP or UDPLite in the same rule";

/// On a rule: icmp/notIcmp need protocol ICMP or ICMPv6.
pub const ICMP_NEEDS_PROTOCOL: &str = "!(has(self.icmp) || has(self.notIcmp)) || \
     (has(self.protocol) && (type(self.protocol) == int ? self.protocol in [1, 58] \
     : self.protocol in ['ICMP', 'ICMPv6']))";
pub const ICMP_NEEDS_PROTOCOL_MSG: &str =
    "icmp and notIcmp require protocol ICMP or ICMPv6 in the same rule";

/// On a list of ports: each is a number, "first:last", or a port name (with a letter, no "--").
pub const PORTS: &str = "self.all(p, type(p) == int ? (p >= 1 && p <= 65535) : \
     (p.matches('^[0-9]{1,5}(:[0-9]{1,5})?$') || (p.matches('^[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?$') \
     && p.matches('[a-z]') && !p.contains('--'))))";
pub const PORTS_MSG: &str = "each port must be a number 1..65535, a range \"first:last\" such as \"1000:2000\", \
     or a port name (lower-case letters, digits and '-', at most 15 characters)";

/// On a list of ports: numbers written as strings and range ends are 1..65535, first <= last.
pub const PORT_RANGES_ORDERED: &str = "self.filter(p, type(p) == string && p.matches('^[0-9]{1,5}(:[0-9]{1,5})?$'))\
     .map(p, p.split(':')).all(ends, int(ends[0]) >= 1 && int(ends[0]) <= int(ends[ends.size() - 1]) \
     && int(ends[ends.size() - 1]) <= 65535)";
pub const PORT_RANGES_ORDERED_MSG: &str =
    "port numbers must be 1..65535 and a range \"first:last\" needs first <= last";

/// On a list of nets: each is a CIDR or an IP address.
pub const NETS: &str = "self.all(n, isCIDR(n) || isIP(n))";
pub const NETS_MSG: &str = "each entry must be a CIDR such as 10.0.0.0/8 or an IP address";
