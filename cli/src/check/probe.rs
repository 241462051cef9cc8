//! One connection attempt made from inside a pod: agnhost netexec's `/dial`, reached through the
//! API server's pod proxy, and the reading of its answer.

use std::net::IpAddr;

use kube::Client;
use serde::Deserialize;

/// What a dial returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialed {
    /// The destination answered with this body.
    Answered(String),
    /// The connection failed (the dialling pod's error text).
    Refused(String),
    /// The dialling pod itself could not be reached or gave an unreadable answer.
    Broken(String),
}

#[derive(Deserialize)]
struct DialAnswer {
    #[serde(default)]
    responses: Vec<String>,
    #[serde(default)]
    errors: Vec<String>,
}

/// Reads netexec's `/dial` JSON: `{"responses": [...]}` or `{"errors": [...]}`.
pub fn parse(body: &str) -> Dialed {
    match serde_json::from_str::<DialAnswer>(body) {
        Ok(answer) => match answer.responses.into_iter().next() {
            Some(response) => Dialed::Answered(response.trim().to_owned()),
            None => Dialed::Refused(answer.errors.join("; ")),
        },
        Err(error) => Dialed::Broken(format!("unreadable answer {body:?}: {error}")),
    }
}

/// Where a dial goes: a host (address or DNS name), a TCP port and the netexec path to request.
pub struct Target<'a> {
    pub host: &'a str,
    pub port: u16,
    pub request: &'a str,
}

fn host_param(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_owned(),
    }
}

/// Asks netexec in `pod` (listening on `pod_port`) to make one HTTP request to `target`.
pub async fn dial(
    client: &Client,
    namespace: &str,
    pod: &str,
    pod_port: u16,
    target: &Target<'_>,
) -> Dialed {
    let path = format!(
        "/api/v1/namespaces/{namespace}/pods/{pod}:{pod_port}/proxy/dial?request={}&protocol=http&host={}&port={}&tries=1",
        target.request,
        host_param(target.host),
        target.port
    );
    let request = match http::Request::get(path).body(Vec::new()) {
        Ok(request) => request,
        Err(error) => return Dialed::Broken(error.to_string()),
    };
    match client.request_text(request).await {
        Ok(body) => parse(&body),
        Err(error) => Dialed::Broken(format!(
            "no answer from {pod} through the API server: {error}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_errors_and_garbage_are_told_apart() {
        assert_eq!(
            parse(r#"{"responses":["echo-a"]}"#),
            Dialed::Answered("echo-a".into())
        );
        assert_eq!(
            parse(r#"{"errors":["dial tcp 10.0.0.1:80: i/o timeout"]}"#),
            Dialed::Refused("dial tcp 10.0.0.1:80: i/o timeout".into())
        );
        assert!(matches!(parse("502 Bad Gateway"), Dialed::Broken(_)));
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_param("fd00::1"), "[fd00::1]");
        assert_eq!(host_param("10.0.0.1"), "10.0.0.1");
        assert_eq!(
            host_param("echo.ns.svc.cluster.local"),
            "echo.ns.svc.cluster.local"
        );
    }
}
