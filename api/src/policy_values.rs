//! Typed views of the int-or-string values of policy rules: protocols and ports. The API server
//! already refuses malformed values (CEL rules in [`crate::policy_cel`]); these parsers give
//! consumers the same verdict plus a typed value.

use std::fmt;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A rule's IP protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    IcmpV6,
    Sctp,
    UdpLite,
    /// Any other protocol, by number (1..255).
    Number(u8),
}

impl Protocol {
    /// The IANA protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::IcmpV6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// Whether the protocol has ports (so a rule with ports may use it).
    pub fn has_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132 | 136)
    }

    /// The named protocol for a number when it has a name, else `Number`.
    pub fn from_number(number: u8) -> Protocol {
        match number {
            1 => Protocol::Icmp,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            58 => Protocol::IcmpV6,
            132 => Protocol::Sctp,
            136 => Protocol::UdpLite,
            n => Protocol::Number(n),
        }
    }
}

/// A port match of a rule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PortMatch {
    Number(u16),
    /// An inclusive range `first:last`.
    Range(u16, u16),
    /// A named container port, resolved per endpoint.
    Named(String),
}

impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortMatch::Number(n) => write!(f, "{n}"),
            PortMatch::Range(first, last) => write!(f, "{first}:{last}"),
            PortMatch::Named(name) => f.write_str(name),
        }
    }
}

/// Why a protocol or port value is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "protocol {0:?} is not valid: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or a number between 1 and 255"
    )]
    Protocol(String),
    #[error(
        "port {0:?} is not valid: use a number 1..65535, a range \"first:last\" with first <= last, or a port name (lower-case letters, digits and '-', at most 15 characters)"
    )]
    Port(String),
}

/// Parses a rule's `protocol` / `notProtocol`.
pub fn parse_protocol(value: &IntOrString) -> Result<Protocol, ValueError> {
    match value {
        IntOrString::Int(n) => u8::try_from(*n)
            .ok()
            .filter(|n| *n >= 1)
            .map(Protocol::from_number)
            .ok_or_else(|| ValueError::Protocol(n.to_string())),
        IntOrString::String(name) => match name.as_str() {
            "TCP" => Ok(Protocol::Tcp),
            "UDP" => Ok(Protocol::Udp),
            "ICMP" => Ok(Protocol::Icmp),
            "ICMPv6" => Ok(Protocol::IcmpV6),
            "SCTP" => Ok(Protocol::Sctp),
            "UDPLite" => Ok(Protocol::UdpLite),
            other => Err(ValueError::Protocol(other.to_owned())),
        },
    }
}

/// Parses one entry of `ports` / `notPorts`.
pub fn parse_port(value: &IntOrString) -> Result<PortMatch, ValueError> {
    let fail = || {
        ValueError::Port(match value {
            IntOrString::Int(n) => n.to_string(),
            IntOrString::String(s) => s.clone(),
        })
    };
    match value {
        IntOrString::Int(n) => port_number(&n.to_string())
            .map(PortMatch::Number)
            .ok_or_else(fail),
        IntOrString::String(text) => {
            if let Some((first, last)) = text.split_once(':') {
                let (first, last) = (
                    port_number(first).ok_or_else(fail)?,
                    port_number(last).ok_or_else(fail)?,
                );
                return if first <= last {
                    Ok(PortMatch::Range(first, last))
                } else {
                    Err(fail())
                };
            }
            if let Some(n) = port_number(text) {
                return Ok(PortMatch::Number(n));
            }
            if is_port_name(text) {
                Ok(PortMatch::Named(text.clone()))
            } else {
                Err(fail())
            }
        }
    }
}

fn port_number(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|n| *n >= 1)
}

/// A port name as Kubernetes allows for container ports (IANA service name).
fn is_port_name(text: &str) -> bool {
    let bytes = text.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 15
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes.iter().any(|b| b.is_ascii_lowercase())
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
        && !text.contains("--")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> IntOrString {
        IntOrString::String(text.to_owned())
    }

    #[test]
    fn protocols_by_name_and_number() {
        assert_eq!(parse_protocol(&s("TCP")), Ok(Protocol::Tcp));
        assert_eq!(parse_protocol(&IntOrString::Int(17)), Ok(Protocol::Udp));
        assert_eq!(
            parse_protocol(&IntOrString::Int(47)),
            Ok(Protocol::Number(47))
        );
        assert!(parse_protocol(&s("tcp")).is_err());
        assert!(parse_protocol(&IntOrString::Int(0)).is_err());
        assert!(parse_protocol(&IntOrString::Int(256)).is_err());
        assert!(Protocol::Sctp.has_ports() && !Protocol::Icmp.has_ports());
    }

    #[test]
    fn ports_numbers_ranges_and_names() {
        assert_eq!(parse_port(&IntOrString::Int(80)), Ok(PortMatch::Number(80)));
        assert_eq!(parse_port(&s("443")), Ok(PortMatch::Number(443)));
        assert_eq!(
            parse_port(&s("1000:2000")),
            Ok(PortMatch::Range(1000, 2000))
        );
        assert_eq!(
            parse_port(&s("http-alt")),
            Ok(PortMatch::Named("http-alt".into()))
        );
        for bad in [
            "0",
            "65536",
            "2000:1000",
            "1:",
            ":2",
            "HTTP",
            "-web",
            "a-very-long-port-name",
            "",
        ] {
            assert!(parse_port(&s(bad)).is_err(), "{bad} accepted");
        }
        assert!(parse_port(&IntOrString::Int(-1)).is_err());
        assert_eq!(PortMatch::Range(1, 2).to_string(), "1:2");
    }
}
