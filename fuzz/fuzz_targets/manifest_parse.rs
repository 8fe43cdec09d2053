//! The manifest parser on arbitrary bytes: parse, per-object and set
//! validation, and printing every diagnostic must neither panic nor take
//! long (libFuzzer's `-timeout` turns a slow input into a failure).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = berth_spec::parse_str("fuzz.yaml", &text);
    for d in berth_spec::validate_set(&parsed.objects)
        .iter()
        .chain(&parsed.diagnostics)
    {
        let line = d.to_string();
        assert!(line.starts_with("fuzz.yaml:"), "{line}");
    }
});
