//! Shared pieces of the fuzz targets.

use coach_plugin_sdk::Example;
use source_files::{Config, Parsed, parse_file};
use std::path::Path;

/// Parse `data` as a file in `format`, as the `source-files` plugin would,
/// and check what it produced: every example it hands on must be one the
/// host accepts as to its entity spans (inside the text, on character
/// boundaries, not empty), and every bad record must name its place.
///
/// The first byte picks the step's `split` (and, for `csv`, the delimiter),
/// so those paths are reached too.
pub fn source_file(format: &str, file_name: &str, data: &[u8]) {
    let Some((&knob, bytes)) = data.split_first() else {
        return;
    };
    let split = ["unspecified", "train", "validation", "test"][usize::from(knob & 3)];
    let delimiter = [",", ";", "\t", "|"][usize::from((knob >> 2) & 3)];
    let config: Config = serde_json::from_value(serde_json::json!({
        "path": file_name,
        "format": format,
        "split": split,
        "delimiter": delimiter,
    }))
    .expect("a valid step configuration");
    let mut out = Parsed::default();
    let _ = parse_file(&config, Path::new(file_name), bytes, &mut out);
    for e in &out.examples {
        check_spans(e);
    }
    for b in &out.bad {
        assert!(
            !b.location.is_empty(),
            "a bad record without a place: {b:?}"
        );
    }
}

fn check_spans(e: &Example) {
    for s in &e.entities {
        let (start, end) = (s.start as usize, s.end as usize);
        assert!(
            start < end && end <= e.text.len(),
            "entity {:?} {start}..{end} outside text {:?}",
            s.entity,
            e.text
        );
        assert!(
            e.text.is_char_boundary(start) && e.text.is_char_boundary(end),
            "entity {:?} {start}..{end} splits a character of {:?}",
            s.entity,
            e.text
        );
    }
}

/// The source-format targets differ only in the format they read.
#[macro_export]
macro_rules! source_target {
    ($format:literal, $file:literal) => {
        libfuzzer_sys::fuzz_target!(|data: &[u8]| {
            coach_fuzz::source_file($format, $file, data);
        });
    };
}
