//! The event decoder on arbitrary bytes. Besides "never panics, never hangs": a rejection
//! carries one of the documented reason labels, and an accepted event survives a round trip
//! (encode it, decode it again, get the same event), so nothing is silently altered.
#![no_main]

use incident_console::core::event::{DEFAULT_MAX_PAYLOAD_BYTES, DecodeError, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode(Some(data), DEFAULT_MAX_PAYLOAD_BYTES) {
        Ok(event) => {
            let encoded = serde_json::to_vec(&event).expect("a decoded event encodes");
            let again = decode(Some(&encoded), usize::MAX)
                .unwrap_or_else(|error| panic!("re-encoded event does not decode: {error}"));
            assert_eq!(again, event, "the round trip changed the event");
        }
        Err(error) => {
            assert!(DecodeError::REASONS.contains(&error.reason()));
            assert!(!error.to_string().is_empty());
        }
    }
});
