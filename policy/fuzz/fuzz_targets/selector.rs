//! Fuzzes the selector parser: any input either fails with an error or parses to a selector
//! whose printed form parses back to the same selector; evaluation never panics.

#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use weft_policy::selector::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(selector) = Selector::parse(text) else {
        return;
    };
    let printed = selector.to_string();
    let reparsed = Selector::parse(&printed)
        .unwrap_or_else(|e| panic!("printed form {printed:?} of {text:?} does not parse: {e}"));
    assert_eq!(reparsed, selector, "{text:?} printed as {printed:?}");
    assert_eq!(reparsed.to_string(), printed);
    let labels = BTreeMap::from([
        ("a".to_string(), "x".to_string()),
        ("app".to_string(), "web".to_string()),
        ("k".to_string(), String::new()),
    ]);
    let _ = selector.matches(&labels);
    let _ = selector.matches_global(&labels);
});
