//! The `weft-ipam` CNI IPAM plugin: host-local ranges, the node's podCIDR, or the node's pool blocks.

fn main() -> std::process::ExitCode {
    weft_cni::cli::main_with(weft_cni::ipam::command::run)
}
