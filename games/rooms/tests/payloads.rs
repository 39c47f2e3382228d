//! The demo's payload format against PROTOCOL.md ("Demo game payloads" and the `event-*` test
//! vectors): what the document says each vector's payload is, it decodes to; and broken payloads
//! are refused with a reason.

use bytes::Bytes;
use rooms::payload::{DemoEvent, InvalidEvent};

/// The `event-*` vectors of PROTOCOL.md: name, event seq, and the demo event the payload is.
fn documented() -> Vec<(&'static str, u64, DemoEvent)> {
    vec![
        (
            "event-relay",
            1,
            DemoEvent::Relay {
                from: "ann".into(),
                input_seq: 1,
                data: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
            },
        ),
        (
            "event-state",
            2,
            DemoEvent::State {
                tick: 100,
                members: 2,
                inputs: 3,
            },
        ),
        (
            "event-presence-joined",
            3,
            DemoEvent::Presence {
                joined: true,
                player: "bob".into(),
            },
        ),
        (
            "event-presence-left",
            4,
            DemoEvent::Presence {
                joined: false,
                player: "bob".into(),
            },
        ),
    ]
}

/// The hex block of a named vector in PROTOCOL.md.
fn vector_bytes(name: &str) -> Vec<u8> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../PROTOCOL.md"))
        .expect("PROTOCOL.md is readable");
    let heading = format!("### {name}\n");
    let start = text
        .find(&heading)
        .unwrap_or_else(|| panic!("no vector {name} in PROTOCOL.md"));
    let rest = &text[start..];
    let open = rest.find("```hex\n").expect("a hex block") + "```hex\n".len();
    let close = rest[open..].find("```").expect("the block ends") + open;
    let hex: String = rest[open..close].split_whitespace().collect();
    hex::decode(hex).expect("valid hex")
}

#[test]
fn the_documented_event_vectors_carry_these_demo_events() {
    for (name, seq, event) in documented() {
        let frame = vector_bytes(name);
        // Length prefix, kind 0x06, the event seq, then the payload.
        assert_eq!(frame[4], 0x06, "{name} is an Event");
        assert_eq!(
            u64::from_be_bytes(frame[5..13].try_into().expect("8 bytes")),
            seq,
            "{name}"
        );
        let payload = Bytes::copy_from_slice(&frame[13..]);
        assert_eq!(payload, event.to_bytes(), "{name}: encoding");
        assert_eq!(
            DemoEvent::from_bytes(payload),
            Ok(event),
            "{name}: decoding"
        );
    }
}

#[test]
fn demo_events_have_the_documented_bytes() {
    let relay = DemoEvent::Relay {
        from: "ann".into(),
        input_seq: 1,
        data: Bytes::from_static(&[0xde, 0xad]),
    };
    assert_eq!(
        hex::encode(relay.to_bytes()),
        "010003616e6e0000000000000001dead"
    );
    let state = DemoEvent::State {
        tick: 100,
        members: 2,
        inputs: 3,
    };
    assert_eq!(
        hex::encode(state.to_bytes()),
        "0200000000000000640000000200000003"
    );
    let presence = DemoEvent::Presence {
        joined: false,
        player: "bob".into(),
    };
    assert_eq!(hex::encode(presence.to_bytes()), "03000003626f62");
    for event in [relay, state, presence] {
        assert_eq!(
            DemoEvent::from_bytes(event.to_bytes()).expect("decodes"),
            event
        );
    }
}

#[test]
fn relay_data_is_the_rest_of_the_payload_even_when_empty() {
    let relay = DemoEvent::Relay {
        from: String::new(),
        input_seq: u64::MAX,
        data: Bytes::new(),
    };
    assert_eq!(relay.to_bytes().len(), 1 + 2 + 8);
    assert_eq!(
        DemoEvent::from_bytes(relay.to_bytes()).expect("decodes"),
        relay
    );
}

#[test]
fn invalid_demo_payloads_are_rejected() {
    let reject = |hex_payload: &str| {
        let payload = Bytes::from(hex::decode(hex_payload).expect("hex"));
        match DemoEvent::from_bytes(payload) {
            Err(InvalidEvent(reason)) => reason,
            other => panic!("{hex_payload}: {other:?}"),
        }
    };
    assert_eq!(reject(""), "demo event needs a tag");
    assert_eq!(reject("04"), "unknown demo event tag");
    assert_eq!(reject("00"), "unknown demo event tag");
    // State with a trailing byte, and one byte short.
    assert_eq!(
        reject("020000000000000064000000020000000300"),
        "trailing bytes after the last field"
    );
    assert_eq!(
        reject("02000000000000006400000002000000"),
        "state needs an input count"
    );
    // Presence with joined = 2, with a trailing byte, with invalid UTF-8.
    assert_eq!(reject("03020003626f62"), "presence flag is neither 0 nor 1");
    assert_eq!(
        reject("03010003626f6200"),
        "trailing bytes after the last field"
    );
    assert_eq!(reject("030100026fff"), "string is not valid UTF-8");
    // Relay whose sender is 65 bytes, and one cut inside its input seq.
    let long_from = format!("010041{}", "61".repeat(65));
    assert_eq!(reject(&long_from), "relay sender id");
    assert_eq!(reject("010003616e6e000000"), "relay needs an input seq");
}
