//! The weft per-node agent: installs the CNI plugins and config, programs pod routes, NAT and
//! network policy on its node.
