//! Fuzzes the document loader end to end: any text either fails to load with an error, or loads
//! into a model that the matrix evaluator and the nftables compiler handle without panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use weft_policy::eval::Traffic;
use weft_policy::load::load;
use weft_policy::matrix::Matrix;
use weft_policy::model::Protocol;
use weft_policy::nft::{compile, diff};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cluster) = load(&[("fuzz.yaml".to_string(), text.to_string())]) else {
        return;
    };
    let traffic = Traffic {
        protocol: Protocol::Tcp,
        port: 80,
    };
    let _ = Matrix::compute(&cluster, traffic);
    let ruleset = compile(&cluster, "weft_policy");
    let _ = ruleset.full_script();
    assert!(diff(&ruleset, &ruleset).is_empty());
});
