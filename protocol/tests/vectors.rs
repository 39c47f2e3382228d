//! Checks the test vectors of `PROTOCOL.md` against the codec, so the document cannot drift.
//!
//! Every `### name` heading under "## Test vectors" or "## Negative test vectors" is one vector:
//! a description, then one fenced `hex` block with the exact bytes on the wire. The table in
//! [`expectations`] says, for every name, which message the bytes are (or which error they must
//! produce). The test fails when a vector is changed, removed, or added without an expectation.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use protocol::{
    Bye, ByeCode, ClientCodec, ClientMessage, CodecError, DEFAULT_MAX_FRAME_BYTES, Hello, Kind,
    PROTOCOL_VERSION, Resume, ResumeToken, ServerCodec, ServerMessage, Welcome,
};
use tokio_util::codec::{Decoder, Encoder};

/// What a vector's bytes are.
#[derive(Debug)]
enum Expect {
    /// A message a client sends: the server's codec decodes it, the client's codec encodes it.
    ToServer(ClientMessage),
    /// A message a server sends.
    ToClient(ServerMessage),
    /// Bytes the server's decoder must reject.
    RejectedByServer(Rejection),
    /// Bytes the client's decoder must reject.
    RejectedByClient(Rejection),
    /// Bytes both decoders must reject the same way.
    RejectedByBoth(Rejection),
}

/// The error a negative vector must produce (with the default maximum frame size).
#[derive(Debug, Clone, Copy)]
enum Rejection {
    FrameTooLarge {
        len: usize,
    },
    EmptyFrame,
    UnknownKind(u8),
    WrongDirection(Kind),
    Malformed {
        kind: Kind,
        reason: &'static str,
    },
    /// Only at end of stream: `decode_eof` reports the unfinished frame.
    Truncated {
        buffered: usize,
    },
}

impl Rejection {
    /// The `CodecError` variant's name, which the vector's description must mention.
    fn variant(&self) -> &'static str {
        match self {
            Rejection::FrameTooLarge { .. } => "FrameTooLarge",
            Rejection::EmptyFrame => "EmptyFrame",
            Rejection::UnknownKind(_) => "UnknownKind",
            Rejection::WrongDirection(_) => "WrongDirection",
            Rejection::Malformed { .. } => "Malformed",
            Rejection::Truncated { .. } => "Truncated",
        }
    }

    fn matches(&self, error: &CodecError) -> bool {
        match (self, error) {
            (Rejection::FrameTooLarge { len }, CodecError::FrameTooLarge { len: got, max }) => {
                got == len && *max == DEFAULT_MAX_FRAME_BYTES
            }
            (Rejection::EmptyFrame, CodecError::EmptyFrame) => true,
            (Rejection::UnknownKind(byte), CodecError::UnknownKind(got)) => got == byte,
            (Rejection::WrongDirection(kind), CodecError::WrongDirection(got)) => got == kind,
            (
                Rejection::Malformed { kind, reason },
                CodecError::Malformed {
                    kind: got_kind,
                    reason: got_reason,
                },
            ) => got_kind == kind && got_reason == reason,
            (Rejection::Truncated { buffered }, CodecError::Truncated { buffered: got }) => {
                got == buffered
            }
            _ => false,
        }
    }
}

fn hello(
    player_id: &str,
    room: &str,
    auth_token: Option<&str>,
    resume: Option<Resume>,
) -> ClientMessage {
    ClientMessage::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        player_id: player_id.into(),
        room: room.into(),
        auth_token: auth_token.map(Into::into),
        resume,
        options: Default::default(),
    }))
}

/// A server `Event` carrying these payload bytes.
fn event(seq: u64, payload: &'static [u8]) -> Expect {
    Expect::ToClient(ServerMessage::Event {
        seq,
        payload: Bytes::from_static(payload),
    })
}

fn token(first: u8) -> ResumeToken {
    let mut bytes = [0u8; 16];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = first + i as u8;
    }
    ResumeToken(bytes)
}

const TOKEN: &str = "ann.1767225600.9c1f";
const NONCE: u64 = 0x0102_0304_0506_0708;
/// The join options of the vectors that carry some.
const TEAM: &[u8] = br#"{"team":"red"}"#;

fn expectations() -> BTreeMap<&'static str, Expect> {
    use Expect::*;
    use Rejection::*;

    let resume = Resume {
        token: token(0xa0),
        last_event_seq: 42,
    };
    let welcome = |resume_token, resumed, last_input_seq, room: &str| Welcome {
        session_id: 1,
        heartbeat_interval_ms: 5000,
        idle_timeout_ms: 15000,
        resume_token,
        resumed,
        last_input_seq,
        room: room.into(),
    };
    let bye = |code, text: &str| Bye::new(code, text);

    BTreeMap::from([
        // Client to server.
        ("hello-minimal", ToServer(hello("ann", "", None, None))),
        (
            "hello-room-auth",
            ToServer(hello("ann", "lobby", Some(TOKEN), None)),
        ),
        (
            "hello-resume",
            ToServer(hello("ann", "lobby", None, Some(resume))),
        ),
        (
            "hello-auth-resume",
            ToServer(hello("ann", "", Some(TOKEN), Some(resume))),
        ),
        (
            "hello-options",
            ToServer(ClientMessage::Hello(Box::new(Hello {
                options: Bytes::from_static(TEAM),
                ..Hello::new("ann", "lobby")
            }))),
        ),
        (
            "hello-version-2",
            ToServer(ClientMessage::Hello(Box::new(Hello {
                version: 2,
                ..Hello::new("ann", "")
            }))),
        ),
        (
            "hello-version-4",
            ToServer(ClientMessage::Hello(Box::new(Hello {
                version: 4,
                ..Hello::new("ann", "")
            }))),
        ),
        (
            "client-ping",
            ToServer(ClientMessage::Ping { nonce: NONCE }),
        ),
        (
            "client-pong",
            ToServer(ClientMessage::Pong { nonce: NONCE }),
        ),
        (
            "input",
            ToServer(ClientMessage::Input {
                seq: 1,
                payload: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]),
            }),
        ),
        (
            "input-empty-payload",
            ToServer(ClientMessage::Input {
                seq: 2,
                payload: Bytes::new(),
            }),
        ),
        ("client-ack", ToServer(ClientMessage::Ack { seq: 7 })),
        (
            "client-bye",
            ToServer(ClientMessage::Bye(bye(ByeCode::ClientQuit, ""))),
        ),
        (
            "client-bye-text",
            ToServer(ClientMessage::Bye(bye(ByeCode::ClientQuit, "done"))),
        ),
        (
            "join",
            ToServer(ClientMessage::Join {
                room: "arena-2".into(),
                options: Bytes::new(),
            }),
        ),
        (
            "join-options",
            ToServer(ClientMessage::Join {
                room: "arena-2".into(),
                options: Bytes::from_static(TEAM),
            }),
        ),
        // Server to client.
        (
            "welcome",
            ToClient(ServerMessage::Welcome(welcome(
                ResumeToken::NONE,
                false,
                0,
                "auto-1",
            ))),
        ),
        (
            "welcome-resumed",
            ToClient(ServerMessage::Welcome(welcome(
                token(0xb0),
                true,
                41,
                "lobby",
            ))),
        ),
        (
            "server-ping",
            ToClient(ServerMessage::Ping { nonce: NONCE }),
        ),
        (
            "server-pong",
            ToClient(ServerMessage::Pong { nonce: NONCE }),
        ),
        // Events carry game payloads, opaque to the protocol: these are the demo game's
        // (games/rooms/tests/payloads.rs checks that they decode to what the document says).
        (
            "event-relay",
            event(
                1,
                &[
                    0x01, 0x00, 0x03, 0x61, 0x6e, 0x6e, 0, 0, 0, 0, 0, 0, 0, 1, 0xde, 0xad, 0xbe,
                    0xef,
                ],
            ),
        ),
        (
            "event-state",
            event(2, &[0x02, 0, 0, 0, 0, 0, 0, 0, 100, 0, 0, 0, 2, 0, 0, 0, 3]),
        ),
        (
            "event-presence-joined",
            event(3, &[0x03, 0x01, 0x00, 0x03, 0x62, 0x6f, 0x62]),
        ),
        (
            "event-presence-left",
            event(4, &[0x03, 0x00, 0x00, 0x03, 0x62, 0x6f, 0x62]),
        ),
        ("server-ack", ToClient(ServerMessage::Ack { seq: 1 })),
        (
            "server-bye-client-quit",
            ToClient(ServerMessage::Bye(bye(ByeCode::ClientQuit, ""))),
        ),
        (
            "bye-version-mismatch",
            ToClient(ServerMessage::Bye(bye(
                ByeCode::VersionMismatch,
                "this server speaks protocol version 3, the client sent 4",
            ))),
        ),
        (
            "bye-server-full",
            ToClient(ServerMessage::Bye(bye(ByeCode::ServerFull, ""))),
        ),
        (
            "bye-kicked-utf8",
            ToClient(ServerMessage::Bye(bye(ByeCode::Kicked, "à bientôt"))),
        ),
        (
            "joined",
            ToClient(ServerMessage::Joined {
                room: "arena-2".into(),
            }),
        ),
        (
            "join-refused",
            ToClient(ServerMessage::JoinRefused {
                room: "arena-2".into(),
                text: "the room is full".into(),
            }),
        ),
        (
            "bye-join-refused",
            ToClient(ServerMessage::Bye(bye(
                ByeCode::JoinRefused,
                "the room is full",
            ))),
        ),
        (
            "bye-game-ended",
            ToClient(ServerMessage::Bye(bye(
                ByeCode::GameEnded,
                "the match is over",
            ))),
        ),
        (
            "neg-join-refused-to-server",
            RejectedByServer(WrongDirection(Kind::JoinRefused)),
        ),
        // Negative vectors.
        (
            "neg-oversized-prefix",
            RejectedByBoth(FrameTooLarge { len: 65537 }),
        ),
        (
            "neg-huge-prefix",
            RejectedByBoth(FrameTooLarge { len: 0xffff_ffff }),
        ),
        ("neg-zero-length", RejectedByBoth(EmptyFrame)),
        ("neg-unknown-kind", RejectedByBoth(UnknownKind(0x0c))),
        ("neg-kind-zero", RejectedByBoth(UnknownKind(0x00))),
        (
            "neg-welcome-to-server",
            RejectedByServer(WrongDirection(Kind::Welcome)),
        ),
        (
            "neg-hello-to-client",
            RejectedByClient(WrongDirection(Kind::Hello)),
        ),
        (
            "neg-ping-trailing-byte",
            RejectedByBoth(Malformed {
                kind: Kind::Ping,
                reason: "trailing bytes after the last field",
            }),
        ),
        (
            "neg-ping-short",
            RejectedByBoth(Malformed {
                kind: Kind::Ping,
                reason: "ping needs an 8-byte nonce",
            }),
        ),
        (
            "neg-hello-bad-presence-flag",
            RejectedByServer(Malformed {
                kind: Kind::Hello,
                reason: "presence flag is neither 0 nor 1",
            }),
        ),
        (
            "neg-hello-invalid-utf8",
            RejectedByServer(Malformed {
                kind: Kind::Hello,
                reason: "string is not valid UTF-8",
            }),
        ),
        (
            "neg-hello-empty-player-id",
            RejectedByServer(Malformed {
                kind: Kind::Hello,
                reason: "player id must be 1 to 64 bytes",
            }),
        ),
        (
            "neg-join-string-overrun",
            RejectedByServer(Malformed {
                kind: Kind::Join,
                reason: "room name must be 1 to 64 bytes",
            }),
        ),
        (
            "neg-bye-invalid-utf8",
            RejectedByBoth(Malformed {
                kind: Kind::Bye,
                reason: "bye text must be valid UTF-8",
            }),
        ),
        (
            "neg-bye-unknown-code",
            RejectedByBoth(Malformed {
                kind: Kind::Bye,
                reason: "unknown bye code",
            }),
        ),
        (
            "neg-welcome-bad-resumed-flag",
            RejectedByClient(Malformed {
                kind: Kind::Welcome,
                reason: "presence flag is neither 0 nor 1",
            }),
        ),
        (
            "neg-truncated-body",
            RejectedByBoth(Truncated { buffered: 7 }),
        ),
        (
            "neg-truncated-prefix",
            RejectedByBoth(Truncated { buffered: 2 }),
        ),
    ])
}

/// One vector as written in the document.
#[derive(Debug)]
struct Vector {
    negative: bool,
    description: String,
    bytes: Vec<u8>,
}

/// Parses the vector sections of `PROTOCOL.md`.
fn document_vectors() -> BTreeMap<String, Vector> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../PROTOCOL.md");
    let text = std::fs::read_to_string(path).expect("PROTOCOL.md is readable");

    let mut vectors = BTreeMap::new();
    // (name, negative, description lines, hex blocks)
    let mut current: Option<(String, bool, Vec<String>, Vec<String>)> = None;
    let mut section_negative: Option<bool> = None;
    let mut in_hex: Option<String> = None;

    let mut finish = |current: &mut Option<(String, bool, Vec<String>, Vec<String>)>| {
        if let Some((name, negative, description, blocks)) = current.take() {
            assert_eq!(
                blocks.len(),
                1,
                "vector {name} must have exactly one hex block"
            );
            let hex: String = blocks[0].split_whitespace().collect();
            let bytes = hex::decode(&hex).unwrap_or_else(|e| panic!("vector {name}: bad hex: {e}"));
            let vector = Vector {
                negative,
                description: description.join(" "),
                bytes,
            };
            assert!(
                vectors.insert(name.clone(), vector).is_none(),
                "vector {name} appears twice"
            );
        }
    };

    for line in text.lines() {
        if let Some(hex) = in_hex.as_mut() {
            if line.trim_start().starts_with("```") {
                let block = in_hex.take().unwrap_or_default();
                current
                    .as_mut()
                    .expect("hex block inside a vector")
                    .3
                    .push(block);
            } else {
                hex.push_str(line);
                hex.push(' ');
            }
            continue;
        }
        if let Some(title) = line.strip_prefix("## ") {
            finish(&mut current);
            section_negative = match title.trim() {
                "Test vectors" => Some(false),
                "Negative test vectors" => Some(true),
                _ => None,
            };
            continue;
        }
        let Some(negative) = section_negative else {
            continue;
        };
        if let Some(name) = line.strip_prefix("### ") {
            finish(&mut current);
            current = Some((name.trim().to_owned(), negative, Vec::new(), Vec::new()));
        } else if line.trim() == "```hex" {
            assert!(current.is_some(), "hex block outside a vector");
            in_hex = Some(String::new());
        } else if let Some((_, _, description, _)) = current.as_mut() {
            if !line.trim().is_empty() {
                description.push(line.trim().to_owned());
            }
        }
    }
    assert!(in_hex.is_none(), "unterminated hex block");
    finish(&mut current);
    vectors
}

/// Decodes every frame in `bytes`, then ends the stream. Returns the messages, or the first error.
fn decode_stream<D: Decoder<Error = CodecError>>(
    mut codec: D,
    bytes: &[u8],
    one_byte_at_a_time: bool,
) -> Result<Vec<D::Item>, CodecError> {
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let chunk = if one_byte_at_a_time {
        1
    } else {
        bytes.len().max(1)
    };
    for piece in bytes.chunks(chunk) {
        src.extend_from_slice(piece);
        while let Some(message) = codec.decode(&mut src)? {
            out.push(message);
        }
    }
    while let Some(message) = codec.decode_eof(&mut src)? {
        out.push(message);
    }
    assert!(src.is_empty(), "a clean end leaves nothing buffered");
    Ok(out)
}

fn check_round_trip<M, E, D>(
    name: &str,
    expected: &M,
    bytes: &[u8],
    mut encoder: E,
    decoder: impl Fn() -> D,
) where
    M: PartialEq + std::fmt::Debug,
    E: for<'a> Encoder<&'a M, Error = CodecError>,
    D: Decoder<Item = M, Error = CodecError>,
{
    let mut encoded = BytesMut::new();
    encoder
        .encode(expected, &mut encoded)
        .expect("the expected message encodes");
    assert_eq!(
        hex::encode(&encoded),
        hex::encode(bytes),
        "vector {name}: encoding {expected:?} gives other bytes than the document"
    );
    for one_byte_at_a_time in [false, true] {
        let decoded = decode_stream(decoder(), bytes, one_byte_at_a_time)
            .unwrap_or_else(|e| panic!("vector {name}: does not decode: {e}"));
        assert!(
            decoded.len() == 1 && decoded[0] == *expected,
            "vector {name}: decodes to {decoded:?}"
        );
    }
}

fn check_rejection<D: Decoder<Error = CodecError>>(
    name: &str,
    rejection: Rejection,
    bytes: &[u8],
    decoder: impl Fn() -> D,
) where
    D::Item: std::fmt::Debug,
{
    for one_byte_at_a_time in [false, true] {
        match decode_stream(decoder(), bytes, one_byte_at_a_time) {
            Ok(messages) => {
                panic!("vector {name}: decoded to {messages:?}, expected {rejection:?}")
            }
            Err(error) => assert!(
                rejection.matches(&error),
                "vector {name}: rejected with {error:?}, expected {rejection:?}"
            ),
        }
    }
}

#[test]
fn document_and_table_name_the_same_vectors() {
    let document: BTreeSet<String> = document_vectors().into_keys().collect();
    let table: BTreeSet<String> = expectations().into_keys().map(str::to_owned).collect();
    let missing: Vec<_> = table.difference(&document).collect();
    let unexpected: Vec<_> = document.difference(&table).collect();
    assert!(
        missing.is_empty() && unexpected.is_empty(),
        "PROTOCOL.md lacks vectors {missing:?}; the test has no expectation for {unexpected:?}"
    );
}

#[test]
fn document_has_enough_vectors_of_each_kind() {
    let vectors = document_vectors();
    let positive = vectors.values().filter(|v| !v.negative).count();
    let negative = vectors.values().filter(|v| v.negative).count();
    assert!(positive >= 16, "only {positive} positive vectors");
    assert!(negative >= 7, "only {negative} negative vectors");

    // Every kind, in every direction it travels, has a vector.
    let table = expectations();
    let mut seen = BTreeSet::new();
    for expect in table.values() {
        match expect {
            Expect::ToServer(m) => {
                seen.insert(("to server", protocol::WireMessage::kind(m) as u8));
            }
            Expect::ToClient(m) => {
                seen.insert(("to client", protocol::WireMessage::kind(m) as u8));
            }
            _ => {}
        }
    }
    let to_server = [
        Kind::Hello,
        Kind::Ping,
        Kind::Pong,
        Kind::Input,
        Kind::Ack,
        Kind::Bye,
        Kind::Join,
    ];
    let to_client = [
        Kind::Welcome,
        Kind::Ping,
        Kind::Pong,
        Kind::Event,
        Kind::Ack,
        Kind::Bye,
        Kind::Joined,
        Kind::JoinRefused,
    ];
    for kind in to_server {
        assert!(
            seen.contains(&("to server", kind as u8)),
            "no vector for {kind:?} to the server"
        );
    }
    for kind in to_client {
        assert!(
            seen.contains(&("to client", kind as u8)),
            "no vector for {kind:?} to the client"
        );
    }
}

#[test]
fn every_vector_matches_the_codec() {
    let table = expectations();
    let vectors = document_vectors();
    let mut checked = 0;
    for (name, vector) in &vectors {
        let Some(expect) = table.get(name.as_str()) else {
            continue; // reported by document_and_table_name_the_same_vectors
        };
        let negative = matches!(
            expect,
            Expect::RejectedByServer(_) | Expect::RejectedByClient(_) | Expect::RejectedByBoth(_)
        );
        assert_eq!(
            vector.negative, negative,
            "vector {name} is in the wrong section of PROTOCOL.md"
        );
        let bytes = &vector.bytes;
        match expect {
            Expect::ToServer(message) => {
                check_round_trip(
                    name,
                    message,
                    bytes,
                    ClientCodec::default(),
                    ServerCodec::default,
                );
                wrong_way(name, bytes, ClientCodec::default(), message);
            }
            Expect::ToClient(message) => {
                check_round_trip(
                    name,
                    message,
                    bytes,
                    ServerCodec::default(),
                    ClientCodec::default,
                );
                wrong_way(name, bytes, ServerCodec::default(), message);
            }
            Expect::RejectedByServer(rejection) => {
                check_rejection(name, *rejection, bytes, ServerCodec::default);
            }
            Expect::RejectedByClient(rejection) => {
                check_rejection(name, *rejection, bytes, ClientCodec::default);
            }
            Expect::RejectedByBoth(rejection) => {
                check_rejection(name, *rejection, bytes, ServerCodec::default);
                check_rejection(name, *rejection, bytes, ClientCodec::default);
            }
        }
        if let Expect::RejectedByServer(r)
        | Expect::RejectedByClient(r)
        | Expect::RejectedByBoth(r) = expect
        {
            let variant = format!("`{}`", r.variant());
            assert!(
                vector.description.contains(&variant),
                "vector {name}: the description must name the error {variant}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, table.len());
}

/// A message sent to the wrong end is rejected as `WrongDirection`, unless its kind travels both
/// ways (then the other end decodes the same bytes as its own variant of the message).
fn wrong_way<D: Decoder<Error = CodecError>, M: std::fmt::Debug>(
    name: &str,
    bytes: &[u8],
    decoder: D,
    message: &M,
) where
    D::Item: std::fmt::Debug,
{
    let kind = Kind::from_u8(bytes[4]).expect("a vector's kind byte is known");
    let both_ways = matches!(kind, Kind::Ping | Kind::Pong | Kind::Ack | Kind::Bye);
    match decode_stream(decoder, bytes, false) {
        Err(CodecError::WrongDirection(got)) if !both_ways => assert_eq!(got, kind),
        Ok(decoded) if both_ways => assert_eq!(decoded.len(), 1, "vector {name}"),
        other => panic!("vector {name} ({message:?}) sent the wrong way gave {other:?}"),
    }
}

/// Prints the frames of the table, to help write new vectors: `cargo test -p game-protocol --test
/// vectors -- --ignored --nocapture print_frames`.
#[test]
#[ignore = "a writing aid, not a check"]
fn print_frames() {
    for (name, expect) in expectations() {
        let mut dst = BytesMut::new();
        match expect {
            Expect::ToServer(m) => ClientCodec::default().encode(&m, &mut dst).map(|_| ()),
            Expect::ToClient(m) => ServerCodec::default().encode(&m, &mut dst).map(|_| ()),
            _ => continue,
        }
        .expect("encodes");
        println!("{name}: {}", hex::encode(&dst));
    }
}
