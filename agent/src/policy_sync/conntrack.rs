//! Cutting connections that policy no longer allows. A denied TCP connection's entry is
//! deleted (the table drops a mid-stream packet that would open a new one); a denied flow of
//! another protocol keeps its entry, marked with `CUT_MARK`, which the table drops: deleting
//! it would let a reply in flight open the flow again in the reverse orientation. Entries of an
//! address that changes hands are deleted (a reused address must not inherit the previous
//! pod's connections). Without this, the base chains' `ct state established` accept would keep
//! a denied connection alive for as long as it talks.
//!
//! The `conntrack` tool (conntrack-tools) does the kernel side, run inside the node's namespace
//! like `nft`; netlink's conntrack messages would spare a process per call, but a policy change
//! cuts few flows and the tool is the reference implementation of that protocol.

use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};

/// A failed conntrack call.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("{program} {args}: {message}")]
    Tool {
        program: String,
        args: String,
        message: String,
    },
    #[error("opening the node's namespace {path}: {source}")]
    Netns {
        path: String,
        source: std::io::Error,
    },
}

/// The original direction of one tracked connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub protocol: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    pub mark: u32,
    /// The reply direction's source: differs from `dst` when the connection was DNATed (a
    /// Service address), and is then the pod actually reached.
    pub reply_src: Option<IpAddr>,
}

impl Flow {
    /// Whether `ip` is one end of the connection.
    pub fn involves(&self, ip: &IpAddr) -> bool {
        self.src == *ip || self.dst == *ip || self.reply_src.as_ref() == Some(ip)
    }
}

/// Parses a line of `conntrack -L`: protocol number, then the first (original) src, dst,
/// sport and dport.
pub fn parse_line(line: &str) -> Option<Flow> {
    let mut words = line.split_whitespace();
    words.next()?;
    let protocol = words.next()?.parse().ok()?;
    let (mut src, mut dst, mut sport, mut dport, mut mark) = (None, None, None, None, 0);
    let mut reply_src = None;
    for word in words {
        let Some((key, value)) = word.split_once('=') else {
            continue;
        };
        match key {
            "src" if src.is_none() => src = value.parse().ok(),
            "src" if reply_src.is_none() => reply_src = value.parse().ok(),
            "dst" if dst.is_none() => dst = value.parse().ok(),
            "sport" if sport.is_none() => sport = value.parse().ok(),
            "dport" if dport.is_none() => dport = value.parse().ok(),
            "mark" => mark = value.parse().unwrap_or(0),
            _ => {}
        }
    }
    Some(Flow {
        protocol,
        src: src?,
        dst: dst?,
        sport,
        dport,
        mark,
        reply_src,
    })
}

fn run(netns: Option<&Path>, args: &[String]) -> Result<String, ConntrackError> {
    run_tool("conntrack", netns, args)
}

/// Runs `program` with `args` inside the node's namespace; its output on success.
pub(super) fn run_tool(
    program: &str,
    netns: Option<&Path>,
    args: &[String],
) -> Result<String, ConntrackError> {
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let namespace = netns
        .map(|path| {
            std::fs::File::open(path).map_err(|source| ConntrackError::Netns {
                path: path.display().to_string(),
                source,
            })
        })
        .transpose()?;
    if let Some(file) = &namespace {
        let raw = file.as_raw_fd();
        // SAFETY: between fork and exec only the async-signal-safe setns(2) runs.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, move || {
                if libc::setns(raw, libc::CLONE_NEWNET) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let fail = |message: String| ConntrackError::Tool {
        program: program.to_owned(),
        args: args.join(" "),
        message,
    };
    let output = command.output().map_err(|error| fail(error.to_string()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // Deleting what is not there exits 1 with "0 flow entries": nothing to do is fine.
    if output.status.success() || stderr.contains(" 0 flow entries") {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(fail(stderr.trim().to_owned()))
    }
}

fn family(ip: &IpAddr) -> &'static str {
    if ip.is_ipv4() { "ipv4" } else { "ipv6" }
}

/// Every tracked connection of IPv4, and of IPv6 when `ipv6`.
pub fn list(netns: Option<&Path>, ipv6: bool) -> Result<Vec<Flow>, ConntrackError> {
    let mut flows = Vec::new();
    let families: &[&str] = if ipv6 { &["ipv4", "ipv6"] } else { &["ipv4"] };
    for family in families {
        let text = run(netns, &["-L".into(), "-f".into(), (*family).into()])?;
        flows.extend(text.lines().filter_map(parse_line));
    }
    Ok(flows)
}

/// Deletes the entry of one flow.
pub fn delete(netns: Option<&Path>, flow: &Flow) -> Result<(), ConntrackError> {
    run(netns, &flow_args("-D", flow)).map(drop)
}

/// Sets `bits` in the mark of one flow's entry.
pub fn mark(netns: Option<&Path>, flow: &Flow, bits: u32) -> Result<(), ConntrackError> {
    let mut args = flow_args("-U", flow);
    args.extend(["-m".into(), format!("{bits:#x}/{bits:#x}")]);
    run(netns, &args).map(drop)
}

fn flow_args(verb: &str, flow: &Flow) -> Vec<String> {
    let mut args: Vec<String> = vec![
        verb.into(),
        "-f".into(),
        family(&flow.src).into(),
        "-p".into(),
        flow.protocol.to_string(),
        "-s".into(),
        flow.src.to_string(),
        "-d".into(),
        flow.dst.to_string(),
    ];
    if let (Some(sport), Some(dport)) = (flow.sport, flow.dport) {
        args.extend([
            "--sport".into(),
            sport.to_string(),
            "--dport".into(),
            dport.to_string(),
        ]);
    }
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_give_the_original_direction() {
        let tcp = "tcp      6 431999 ESTABLISHED src=172.16.0.2 dst=172.16.0.66 sport=40000 \
                   dport=8080 src=172.16.0.66 dst=172.16.0.2 sport=8080 dport=40000 [ASSURED] \
                   mark=0 use=1";
        assert_eq!(
            parse_line(tcp),
            Some(Flow {
                protocol: 6,
                src: "172.16.0.2".parse().unwrap(),
                dst: "172.16.0.66".parse().unwrap(),
                sport: Some(40000),
                dport: Some(8080),
                mark: 0,
                reply_src: Some("172.16.0.66".parse().unwrap()),
            })
        );
        let icmp = "icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=7 src=10.0.0.2 \
                    dst=10.0.0.1 type=0 code=0 id=7 mark=0 use=1";
        let flow = parse_line(icmp).unwrap();
        assert_eq!((flow.protocol, flow.sport, flow.dport), (1, None, None));
        assert_eq!(parse_line("conntrack v1.4.7: 2 flow entries"), None);
    }
}
