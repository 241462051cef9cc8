//! The `weft-operator` binary.

fn main() {}
