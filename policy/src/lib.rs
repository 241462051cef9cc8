//! weft's network policy engine: the selector grammar, the policy model (Kubernetes and weft
//! policies), a verdict evaluator and the nftables compiler.

pub mod eval;
pub mod load;
pub mod matrix;
pub mod model;
pub mod nft;
pub mod selector;
