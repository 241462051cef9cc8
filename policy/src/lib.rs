//! weft's network policy engine: the selector grammar, the policy model (Kubernetes and weft
//! policies), a verdict evaluator and the nftables compiler.

pub mod selector;
