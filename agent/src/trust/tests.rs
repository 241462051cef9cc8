use super::*;
use crate::view::{BlockView, PoolView};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use weft_api::Encapsulation;

fn pool(cidr: &str, block_size: u8) -> PoolView {
    PoolView {
        cidr: cidr.parse().unwrap(),
        block_size,
        encapsulation: Encapsulation::Vxlan,
        nat_outgoing: false,
        node_selector: None,
        disabled: false,
    }
}

fn node(address: Option<&str>, created_seconds: i64) -> NodeView {
    let mut node = NodeView {
        created: Some(Time(jiff::Timestamp::from_second(created_seconds).unwrap())),
        ..NodeView::default()
    };
    if let Some(text) = address {
        node.weft_annotations
            .insert(annotations::ADDRESS.into(), text.into());
        node.address = text.parse().ok();
    }
    node
}

fn view() -> ClusterView {
    let mut view = ClusterView::default();
    view.pools.insert("default".into(), pool("10.1.0.0/16", 26));
    view.nodes
        .insert("a".into(), node(Some("192.168.1.2/24"), 1));
    view.nodes
        .insert("b".into(), node(Some("192.168.1.3/24"), 2));
    view
}

fn add_block(view: &mut ClusterView, name: &str, cidr: &str, pool: &str, node: &str) {
    view.blocks.insert(
        name.into(),
        BlockView {
            cidr: cidr.parse().unwrap(),
            pool: pool.into(),
            node: node.into(),
        },
    );
}

fn reasons(refused: &[Refusal]) -> Vec<(String, String)> {
    refused
        .iter()
        .map(|refusal| (refusal.name.clone(), refusal.reason.clone()))
        .collect()
}

#[test]
fn well_formed_blocks_are_trusted_and_forged_ones_refused_by_name() {
    let mut view = view();
    add_block(&mut view, "10-1-0-0-26", "10.1.0.0/26", "default", "a");
    add_block(&mut view, "10-1-0-64-26", "10.1.0.64/26", "default", "b");
    // A route for half the Internet, the API server's /32, a block of a missing pool, a block
    // of a node that does not exist and a block under another block's name.
    add_block(&mut view, "0-0-0-0-1", "0.0.0.0/1", "default", "b");
    add_block(&mut view, "10-96-0-1-32", "10.96.0.1/32", "default", "b");
    add_block(&mut view, "10-2-0-0-26", "10.2.0.0/26", "gone", "b");
    add_block(
        &mut view,
        "10-1-0-128-26",
        "10.1.0.128/26",
        "default",
        "nobody",
    );
    add_block(&mut view, "10-1-1-0-26", "10.1.0.0/26", "default", "b");
    add_block(&mut view, "10-1-2-0-24", "10.1.2.0/24", "default", "b");
    let (trusted, refused) = trusted_blocks(&view, "a");
    assert_eq!(trusted, vec!["10-1-0-0-26", "10-1-0-64-26"]);
    let reasons = reasons(&refused);
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    let reason_of = |name: &str| {
        reasons
            .iter()
            .find(|(refused, _)| refused == name)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_default()
    };
    assert!(reason_of("0-0-0-0-1").contains("outside IPPool default"));
    assert!(reason_of("10-96-0-1-32").contains("outside IPPool default"));
    assert!(reason_of("10-2-0-0-26").contains("names no IPPool"));
    assert!(reason_of("10-1-0-128-26").contains("names no Node"));
    assert!(reason_of("10-1-1-0-26").contains("not the name of spec.cidr"));
    assert!(reason_of("10-1-2-0-24").contains("not a /26 block"));
}

#[test]
fn this_nodes_blocks_are_served_while_its_node_object_is_missing() {
    let mut view = view();
    view.nodes.remove("a");
    add_block(&mut view, "10-1-0-0-26", "10.1.0.0/26", "default", "a");
    let (trusted, refused) = trusted_blocks(&view, "a");
    assert_eq!(trusted, vec!["10-1-0-0-26"]);
    assert!(refused.is_empty());
}

#[test]
fn overlapping_blocks_of_overlapping_pools_are_both_refused() {
    let mut view = view();
    view.pools.insert("wide".into(), pool("10.1.0.0/24", 24));
    add_block(&mut view, "10-1-0-0-24", "10.1.0.0/24", "wide", "b");
    add_block(&mut view, "10-1-0-64-26", "10.1.0.64/26", "default", "a");
    let (trusted, refused) = trusted_blocks(&view, "a");
    assert!(trusted.is_empty());
    assert_eq!(refused.len(), 2);
    assert!(
        refused
            .iter()
            .all(|refusal| refusal.reason.contains("overlaps block"))
    );
}

#[test]
fn peers_that_cannot_be_next_hops_are_refused_and_the_rest_kept() {
    let mut view = view();
    view.nodes
        .insert("multicast".into(), node(Some("224.0.0.1/24"), 3));
    view.nodes
        .insert("garbage".into(), node(Some("not-an-address"), 4));
    view.nodes
        .insert("me-too".into(), node(Some("192.168.1.2/24"), 5));
    view.nodes
        .insert("in-pods".into(), node(Some("10.1.3.4/16"), 6));
    view.nodes.insert("silent".into(), node(None, 7));
    let (peers, refused) = trusted_peers(&view, "a", "192.168.1.2".parse().unwrap());
    assert_eq!(peers.keys().collect::<Vec<_>>(), vec!["b"]);
    let reasons = reasons(&refused);
    let reason_of = |name: &str| {
        reasons
            .iter()
            .find(|(refused, _)| refused == name)
            .map(|(_, reason)| reason.clone())
            .unwrap_or_default()
    };
    assert!(reason_of("multicast").contains("not a unicast address"));
    assert!(reason_of("garbage").contains("not an IPv4 address"));
    assert!(reason_of("me-too").contains("this node's own address"));
    assert!(reason_of("in-pods").contains("inside the pod network"));
    assert_eq!(refused.len(), 4, "{reasons:?}");
}

#[test]
fn the_older_node_keeps_an_address_a_newer_one_also_announces() {
    let mut view = view();
    view.nodes
        .insert("thief".into(), node(Some("192.168.1.3/24"), 9));
    let (peers, refused) = trusted_peers(&view, "a", "192.168.1.2".parse().unwrap());
    assert_eq!(peers.keys().collect::<Vec<_>>(), vec!["b"]);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].name, "thief");
    assert!(refused[0].reason.contains("already node b's address"));
}

#[test]
fn overlapping_pod_cidrs_are_refused_on_both_nodes() {
    let mut view = view();
    view.nodes.get_mut("a").unwrap().pod_cidrs = vec!["10.1.0.0/24".parse().unwrap()];
    view.nodes.get_mut("b").unwrap().pod_cidrs = vec!["10.1.0.0/16".parse().unwrap()];
    view.nodes
        .insert("c".into(), node(Some("192.168.1.4/24"), 3));
    view.nodes.get_mut("c").unwrap().pod_cidrs = vec!["10.2.0.0/24".parse().unwrap()];
    let (trusted, refused) = trusted_pod_cidrs(&view);
    assert_eq!(
        trusted,
        vec![("c".to_owned(), "10.2.0.0/24".parse().unwrap())]
    );
    assert_eq!(refused.len(), 2);
}
