//! Every hostile item through `core::event::decode`: no panic, and exactly the outcome and
//! reason that `tests/hostile/EXPECTED.ron` states.

mod hostile;

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use hostile::Expected;
use incident_console::core::event::{
    DEFAULT_MAX_PAYLOAD_BYTES, DecodeError, IncidentEvent, decode,
};

/// Decodes without letting a panic escape: a panic is a test failure that names the item.
fn decode_item(
    name: &str,
    payload: Option<&[u8]>,
    limit: usize,
) -> Result<IncidentEvent, DecodeError> {
    catch_unwind(AssertUnwindSafe(|| decode(payload, limit)))
        .unwrap_or_else(|_| panic!("decode panicked on {name}"))
}

#[test]
fn the_corpus_is_large_and_covers_every_reason() {
    let items = hostile::corpus();
    assert!(items.len() >= 40, "only {} items", items.len());
    let mut reasons: BTreeSet<&str> = items
        .iter()
        .filter_map(|item| match &item.expected {
            Expected::Reject(reason) => Some(reason.as_str()),
            Expected::Decode(_) => None,
        })
        .collect();
    // The tombstone is a null value, which no file can hold; the tests produce it.
    reasons.insert("tombstone");
    let all: BTreeSet<&str> = DecodeError::REASONS.into_iter().collect();
    assert_eq!(reasons, all, "every rejection reason has an example");
    for item in &items {
        if let Expected::Reject(reason) = &item.expected {
            assert!(
                all.contains(reason.as_str()),
                "{}: unknown reason {reason}",
                item.name
            );
        }
    }
}

#[test]
fn every_item_decodes_or_is_rejected_as_expected() {
    let mut wrong = Vec::new();
    for item in hostile::corpus() {
        let outcome = decode_item(&item.name, Some(&item.payload), DEFAULT_MAX_PAYLOAD_BYTES);
        let actual = match &outcome {
            Ok(event) => Expected::Decode(event.event_type().as_str().to_string()),
            Err(error) => Expected::Reject(error.reason().to_string()),
        };
        if actual != item.expected {
            let detail = match &outcome {
                Ok(_) => "decoded".to_string(),
                Err(error) => error.to_string().chars().take(200).collect(),
            };
            wrong.push(format!(
                "{}: expected {:?}, got {actual:?} ({detail})",
                item.name, item.expected
            ));
        }
        if let Err(error) = &outcome {
            assert!(!error.to_string().is_empty(), "{}", item.name);
        }
    }
    assert!(
        wrong.is_empty(),
        "{} items differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn a_tombstone_is_rejected() {
    let error = decode_item("tombstone", None, DEFAULT_MAX_PAYLOAD_BYTES).unwrap_err();
    assert_eq!(error.reason(), "tombstone");
}

#[test]
fn hostile_text_is_kept_exactly_as_received() {
    let items = hostile::corpus();
    let title = |name: &str| {
        let item = items.iter().find(|item| item.name == name).unwrap();
        decode(Some(&item.payload), DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap()
            .title()
            .to_string()
    };
    assert_eq!(
        title("crlf_in_title_escaped.json"),
        "Server Down\r\nBcc: everyone@example.com\r\n\r\nbody"
    );
    assert_eq!(
        title("right_to_left_override_in_title.json"),
        "invoice\u{202e}gpj.exe"
    );
    assert!(title("ansi_escapes_in_every_field_incident_created.json").contains("\u{1b}[2J"));
    assert!(title("osc_title_hyperlink_and_clipboard_sequences.json").starts_with("\u{1b}]0;"));
    assert_eq!(title("nul_escaped_in_every_text_field.json"), "a\u{0}b");
    assert!(title("emoji_zwj_flags_and_skin_tones.json").contains("👩‍👩‍👧‍👦"));
    assert_eq!(
        title("combining_characters_zalgo.json").chars().count(),
        806
    );
}

#[test]
fn the_size_limit_applies_before_anything_is_parsed() {
    // With a tiny limit, every item that is not blank is refused by size, whatever it holds.
    for item in hostile::corpus() {
        let outcome = decode_item(&item.name, Some(&item.payload), 16);
        let blank = item.payload.iter().all(u8::is_ascii_whitespace);
        match outcome {
            Err(error) if blank => assert_eq!(error.reason(), "empty", "{}", item.name),
            Err(error) if item.payload.len() > 16 => {
                assert_eq!(error.reason(), "too_large", "{}", item.name)
            }
            // Short items are parsed as usual.
            _ => assert!(item.payload.len() <= 16, "{}", item.name),
        }
    }
}

#[test]
fn every_prefix_of_a_valid_event_is_rejected_without_panic() {
    for item in hostile::corpus()
        .into_iter()
        .filter(|item| item.name.starts_with("valid_"))
    {
        for end in 0..item.payload.len() {
            let outcome = decode_item(
                &item.name,
                Some(&item.payload[..end]),
                DEFAULT_MAX_PAYLOAD_BYTES,
            );
            assert!(outcome.is_err(), "{} cut at {end} decoded", item.name);
        }
        decode_item(&item.name, Some(&item.payload), DEFAULT_MAX_PAYLOAD_BYTES)
            .unwrap_or_else(|error| panic!("{}: {error}", item.name));
    }
}

#[test]
fn any_single_byte_changed_in_a_valid_event_never_panics() {
    let replacements = [
        0x00, 0x1b, b'"', b'\\', b'{', b'}', b'[', b'9', b'-', 0x80, 0xff,
    ];
    let mut outcomes = [0usize; 2];
    for item in hostile::corpus()
        .into_iter()
        .filter(|item| item.name.starts_with("valid_"))
    {
        for index in 0..item.payload.len() {
            for byte in replacements {
                let mut payload = item.payload.clone();
                payload[index] = byte;
                let outcome = decode_item(&item.name, Some(&payload), DEFAULT_MAX_PAYLOAD_BYTES);
                outcomes[usize::from(outcome.is_ok())] += 1;
            }
        }
    }
    // Most changes break the event; some (inside a text field) leave it valid.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}
