//! weft's custom resource types: `operator.weft.dev/v1` Installation and the `network.weft.dev/v1`
//! IPPool, IPAMBlock, NetworkPolicy and GlobalNetworkPolicy, with their defaults and validation.
