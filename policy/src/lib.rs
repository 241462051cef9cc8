//! weft's network policy engine: the selector grammar (re-exported from weft-selector), the policy
//! model (Kubernetes and weft policies), a verdict evaluator and the nftables compiler.

pub mod eval;
pub mod load;
pub mod matrix;
pub mod model;
pub mod nft;
/// The selector grammar, from its own crate (shared with the operator, which needs nothing else).
pub use weft_selector as selector;
