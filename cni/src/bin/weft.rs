//! The `weft` CNI plugin: pod interfaces (veth pair, link-local gateway, host routes).

fn main() -> std::process::ExitCode {
    weft_cni::cli::main_with(weft_cni::plugin::run)
}
