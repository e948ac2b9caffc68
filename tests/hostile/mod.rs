//! The hostile corpus: files under `tests/hostile/corpus/`, the items too large to commit
//! (generated here), and `EXPECTED.ron`, which says for each whether it must decode (and as
//! which event type) or be rejected (and with which `DecodeError::reason()`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// What must become of one item.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub enum Expected {
    /// Decodes, as this `event_type`.
    Decode(String),
    /// Is rejected with this reason label.
    Reject(String),
}

#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub payload: Vec<u8>,
    pub expected: Expected,
}

/// Generated items are named with this prefix in `EXPECTED.ron`.
pub const GENERATED: &str = "generated/";

/// 100,000 levels of nesting: far past any recursion limit.
pub const DEEP: usize = 100_000;

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile")
}

pub fn manifest() -> BTreeMap<String, Expected> {
    let path = dir().join("EXPECTED.ron");
    let text = std::fs::read_to_string(&path).expect("tests/hostile/EXPECTED.ron");
    ron::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

const COMMENT_HEAD: &str = r#"{"event_type":"comment_added","incident_id":7,"title":"Server Down","author":"eve","created_at":"2024-01-01T10:00:00Z","comment":""#;

/// Items too large to keep in the repository, made the same way every time.
pub fn generated() -> Vec<(String, Vec<u8>)> {
    let open_arrays = "[".repeat(DEEP);
    let close_arrays = "]".repeat(DEEP);
    let comment = |body: &str| format!("{COMMENT_HEAD}{body}\"}}").into_bytes();
    let items: Vec<(&str, Vec<u8>)> = vec![
        (
            "deep_array_nesting_100k",
            format!("{open_arrays}{close_arrays}").into_bytes(),
        ),
        (
            "deep_object_nesting_100k",
            format!("{}1{}", r#"{"a":"#.repeat(DEEP), "}".repeat(DEEP)).into_bytes(),
        ),
        (
            "deep_nesting_100k_in_title",
            format!(
                r#"{{"event_type":"comment_added","incident_id":7,"title":{open_arrays}{close_arrays},"author":"eve","comment":"c","created_at":"2024-01-01T10:00:00Z"}}"#
            )
            .into_bytes(),
        ),
        (
            "deep_nesting_100k_in_unknown_field",
            format!(
                r#"{{"event_type":"comment_added","incident_id":7,"junk":{open_arrays}{close_arrays},"title":"t","author":"eve","comment":"c","created_at":"2024-01-01T10:00:00Z"}}"#
            )
            .into_bytes(),
        ),
        (
            "deep_unclosed_nesting_100k",
            format!(r#"{{"event_type":"comment_added","x":{open_arrays}"#).into_bytes(),
        ),
        // Several megabytes: refused by size before any parsing. (3 MiB, not more: the embedded
        // broker keeps about 5 MiB per partition, and its dead-letter copy shares one.)
        ("payload_3_mib", comment(&"A".repeat(3 * 1024 * 1024))),
        // Exactly the default 1 MiB limit: decodes, all of it.
        (
            "payload_of_exactly_1_mib",
            comment(&"B".repeat(1024 * 1024 - COMMENT_HEAD.len() - 2)),
        ),
        (
            "fifty_thousand_unknown_keys",
            {
                let mut text = String::from(r#"{"event_type":"comment_added","#);
                for index in 0..50_000 {
                    text.push_str(&format!("\"k{index}\":{index},"));
                }
                text.push_str(
                    r#""incident_id":7,"title":"t","author":"eve","comment":"c","created_at":"2024-01-01T10:00:00Z"}"#,
                );
                text.into_bytes()
            },
        ),
        (
            "ten_thousand_escape_sequences_in_comment",
            comment(&"\\u001b[2J\\u001b]0;x\\u0007".repeat(10_000)),
        ),
        // Error messages quote what they refuse: these make a 512 KiB message out of one.
        (
            "unknown_event_type_of_512_kib",
            format!(r#"{{"event_type":"{}","incident_id":7}}"#, "X".repeat(512 * 1024)).into_bytes(),
        ),
        (
            "incident_id_as_a_512_kib_string",
            format!(
                r#"{{"event_type":"comment_added","incident_id":"{}","title":"t","author":"eve","comment":"c","created_at":"2024-01-01T10:00:00Z"}}"#,
                "9".repeat(512 * 1024)
            )
            .into_bytes(),
        ),
    ];
    items
        .into_iter()
        .map(|(name, payload)| (format!("{GENERATED}{name}"), payload))
        .collect()
}

/// Every committed and generated item with its expectation. Panics if a file has no
/// expectation or an expectation has no file, so the manifest cannot drift.
pub fn corpus() -> Vec<Item> {
    let mut manifest = manifest();
    let mut items = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir().join("corpus"))
        .expect("tests/hostile/corpus")
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let expected = manifest
            .remove(&name)
            .unwrap_or_else(|| panic!("{name} is not in tests/hostile/EXPECTED.ron"));
        items.push(Item {
            payload: std::fs::read(&path).unwrap(),
            name,
            expected,
        });
    }
    for (name, payload) in generated() {
        let expected = manifest
            .remove(&name)
            .unwrap_or_else(|| panic!("{name} is not in tests/hostile/EXPECTED.ron"));
        items.push(Item {
            name,
            payload,
            expected,
        });
    }
    assert!(
        manifest.is_empty(),
        "EXPECTED.ron names items that do not exist: {:?}",
        manifest.keys().collect::<Vec<_>>()
    );
    items
}
