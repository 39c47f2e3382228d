//! Property tests of the codecs: round trips in both directions, streaming (many frames in one
//! buffer, one byte at a time), robustness against arbitrary bytes, and the memory promises of
//! the decoder (an oversized prefix reserves nothing; an acceptable one reserves at most what the
//! frame needs).

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use protocol::{
    Bye, ByeCode, ClientCodec, ClientMessage, CodecError, DEFAULT_MAX_FRAME_BYTES, HEADER_LEN,
    Hello, Kind, MAX_AUTH_TOKEN_BYTES, MAX_HELLO_BODY, MAX_OPTIONS_BYTES, MAX_PLAYER_ID_BYTES,
    MAX_ROOM_BYTES, PROTOCOL_VERSION, RESUME_TOKEN_LEN, Resume, ResumeToken, ServerCodec,
    ServerMessage, Welcome,
};
use tokio_util::codec::{Decoder, Encoder};

// ---------------------------------------------------------------------------------------------
// Strategies

/// Any Unicode text of `min_chars..` characters whose UTF-8 form is at most `max_bytes` long.
fn text(min_chars: usize, max_bytes: usize) -> impl Strategy<Value = String> {
    vec(any::<char>(), min_chars..=max_bytes.max(min_chars)).prop_map(move |chars| {
        let mut s = String::new();
        for c in chars {
            if s.len() + c.len_utf8() > max_bytes {
                break;
            }
            s.push(c);
        }
        s
    })
}

fn payload() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        4 => vec(any::<u8>(), 0..64),
        1 => vec(any::<u8>(), 0..4096),
    ]
    .prop_map(Bytes::from)
}

fn bye() -> impl Strategy<Value = Bye> {
    (prop::sample::select(ByeCode::ALL.to_vec()), text(0, 200))
        .prop_map(|(code, text)| Bye { code, text })
}

fn resume() -> impl Strategy<Value = Resume> {
    (any::<[u8; 16]>(), any::<u64>()).prop_map(|(token, last_event_seq)| Resume {
        token: ResumeToken(token),
        last_event_seq,
    })
}

fn options() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        2 => Just(Bytes::new()),
        2 => vec(any::<u8>(), 0..32).prop_map(Bytes::from),
        1 => vec(any::<u8>(), 0..=MAX_OPTIONS_BYTES).prop_map(Bytes::from),
    ]
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        prop_oneof![3 => Just(PROTOCOL_VERSION), 1 => any::<u16>()],
        text(1, MAX_PLAYER_ID_BYTES),
        text(0, MAX_ROOM_BYTES),
        proptest::option::of(text(0, 512)),
        proptest::option::of(resume()),
        options(),
    )
        .prop_map(
            |(version, player_id, room, auth_token, resume, options)| Hello {
                version,
                player_id,
                room,
                auth_token,
                resume,
                options,
            },
        )
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        hello().prop_map(ClientMessage::from),
        any::<u64>().prop_map(|nonce| ClientMessage::Ping { nonce }),
        any::<u64>().prop_map(|nonce| ClientMessage::Pong { nonce }),
        (any::<u64>(), payload()).prop_map(|(seq, payload)| ClientMessage::Input { seq, payload }),
        any::<u64>().prop_map(|seq| ClientMessage::Ack { seq }),
        bye().prop_map(ClientMessage::Bye),
        (text(1, MAX_ROOM_BYTES), options())
            .prop_map(|(room, options)| ClientMessage::Join { room, options }),
    ]
}

fn welcome() -> impl Strategy<Value = Welcome> {
    (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<[u8; 16]>(),
        any::<bool>(),
        any::<u64>(),
        text(0, MAX_ROOM_BYTES),
    )
        .prop_map(
            |(
                session_id,
                heartbeat_interval_ms,
                idle_timeout_ms,
                token,
                resumed,
                last_input_seq,
                room,
            )| Welcome {
                session_id,
                heartbeat_interval_ms,
                idle_timeout_ms,
                resume_token: ResumeToken(token),
                resumed,
                last_input_seq,
                room,
            },
        )
}

fn server_message() -> impl Strategy<Value = ServerMessage> {
    prop_oneof![
        welcome().prop_map(ServerMessage::Welcome),
        any::<u64>().prop_map(|nonce| ServerMessage::Ping { nonce }),
        any::<u64>().prop_map(|nonce| ServerMessage::Pong { nonce }),
        (any::<u64>(), payload()).prop_map(|(seq, payload)| ServerMessage::Event { seq, payload }),
        any::<u64>().prop_map(|seq| ServerMessage::Ack { seq }),
        bye().prop_map(ServerMessage::Bye),
        text(0, MAX_ROOM_BYTES).prop_map(|room| ServerMessage::Joined { room }),
        (text(0, MAX_ROOM_BYTES), text(0, 200))
            .prop_map(|(room, text)| ServerMessage::JoinRefused { room, text }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn encode<M, E: for<'a> Encoder<&'a M, Error = CodecError>>(
    mut encoder: E,
    messages: &[M],
) -> (BytesMut, Vec<usize>) {
    let mut dst = BytesMut::new();
    let mut ends = Vec::new();
    for message in messages {
        encoder
            .encode(message, &mut dst)
            .expect("a valid message encodes");
        ends.push(dst.len());
    }
    (dst, ends)
}

/// The frame's prefix says exactly how long the rest of it is.
fn check_prefixes(bytes: &[u8], ends: &[usize]) {
    let mut start = 0;
    for &end in ends {
        let prefix: [u8; 4] = bytes[start..start + HEADER_LEN]
            .try_into()
            .expect("4 bytes");
        assert_eq!(
            u32::from_be_bytes(prefix) as usize,
            end - start - HEADER_LEN
        );
        start = end;
    }
}

/// Decodes everything in one buffer, then checks the stream ends cleanly.
fn decode_buffer<D: Decoder<Error = CodecError>>(mut decoder: D, bytes: &[u8]) -> Vec<D::Item>
where
    D::Item: std::fmt::Debug,
{
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(message) = decoder.decode(&mut src).expect("valid frames decode") {
        out.push(message);
    }
    assert!(src.is_empty(), "bytes left after the last frame");
    assert!(matches!(decoder.decode_eof(&mut src), Ok(None)));
    out
}

/// Feeds the bytes one at a time; a message must come out exactly when its last byte arrives.
fn decode_trickle<D: Decoder<Error = CodecError>>(
    mut decoder: D,
    bytes: &[u8],
    ends: &[usize],
) -> Vec<D::Item>
where
    D::Item: std::fmt::Debug,
{
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    for (i, byte) in bytes.iter().enumerate() {
        src.extend_from_slice(&[*byte]);
        let fed = i + 1;
        match decoder.decode(&mut src).expect("valid frames decode") {
            Some(message) => {
                assert!(
                    ends.contains(&fed),
                    "a message came out mid-frame at byte {fed}"
                );
                out.push(message);
            }
            None => assert!(
                !ends.contains(&fed),
                "no message when frame ending at {fed} completed"
            ),
        }
        let complete = ends.iter().filter(|&&end| end <= fed).count();
        assert_eq!(out.len(), complete);
    }
    assert!(matches!(decoder.decode_eof(&mut src), Ok(None)));
    out
}

/// Decodes arbitrary bytes to the end, checking the decoder's contract on the way.
fn decode_arbitrary<D: Decoder<Error = CodecError>>(mut decoder: D, bytes: &[u8], max_frame: usize)
where
    D::Item: std::fmt::Debug,
{
    let mut src = BytesMut::from(bytes);
    loop {
        let before = src.len();
        match decoder.decode(&mut src) {
            Ok(Some(_)) => assert!(src.len() < before, "a message from no bytes"),
            Ok(None) => {
                assert_eq!(src.len(), before, "Ok(None) consumed bytes");
                match decoder.decode_eof(&mut src) {
                    Ok(None) => assert!(src.is_empty()),
                    Err(CodecError::Truncated { buffered }) => {
                        assert_eq!(buffered, src.len());
                        assert!(buffered > 0);
                    }
                    other => panic!("decode_eof after Ok(None): {other:?}"),
                }
                return;
            }
            Err(CodecError::FrameTooLarge { len, max }) => {
                assert!(len > max && max == max_frame);
                return;
            }
            Err(error) => {
                assert!(error.is_protocol_violation(), "{error:?}");
                return;
            }
        }
    }
}

fn prefix(len: u32) -> [u8; 4] {
    len.to_be_bytes()
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let (bytes, ends) = encode(ClientCodec::default(), std::slice::from_ref(&message));
        check_prefixes(&bytes, &ends);
        prop_assert_eq!(decode_buffer(ServerCodec::default(), &bytes), vec![message]);
    }

    #[test]
    fn server_messages_round_trip(message in server_message()) {
        let (bytes, ends) = encode(ServerCodec::default(), std::slice::from_ref(&message));
        check_prefixes(&bytes, &ends);
        prop_assert_eq!(decode_buffer(ClientCodec::default(), &bytes), vec![message]);
    }

    #[test]
    fn client_streams_round_trip_whole_and_byte_by_byte(messages in vec(client_message(), 1..8)) {
        let (bytes, ends) = encode(ClientCodec::default(), &messages);
        check_prefixes(&bytes, &ends);
        prop_assert_eq!(&decode_buffer(ServerCodec::default(), &bytes), &messages);
        prop_assert_eq!(&decode_trickle(ServerCodec::default(), &bytes, &ends), &messages);
    }

    #[test]
    fn server_streams_round_trip_whole_and_byte_by_byte(messages in vec(server_message(), 1..8)) {
        let (bytes, ends) = encode(ServerCodec::default(), &messages);
        check_prefixes(&bytes, &ends);
        prop_assert_eq!(&decode_buffer(ClientCodec::default(), &bytes), &messages);
        prop_assert_eq!(&decode_trickle(ClientCodec::default(), &bytes, &ends), &messages);
    }

    /// Any bytes at all: no panic, and the decoder keeps its contract (Ok(None) consumes nothing,
    /// a clean end leaves nothing, a truncated one reports exactly what was left).
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600), max_frame in prop_oneof![Just(DEFAULT_MAX_FRAME_BYTES), 1usize..300]) {
        decode_arbitrary(ServerCodec::new(max_frame), &bytes, max_frame);
        decode_arbitrary(ClientCodec::new(max_frame), &bytes, max_frame);
    }

    /// Frame-shaped garbage: a correct prefix around a random body. Whatever decodes must
    /// re-encode to exactly the same bytes (the encoding is canonical), and a rejected frame is
    /// consumed whole.
    #[test]
    fn decoded_frames_re_encode_identically(kind in 0u8..12, fields in vec(any::<u8>(), 0..80)) {
        let mut frame = prefix(1 + fields.len() as u32).to_vec();
        frame.push(kind);
        frame.extend_from_slice(&fields);

        let mut src = BytesMut::from(&frame[..]);
        match ServerCodec::default().decode(&mut src) {
            Ok(Some(message)) => {
                let (again, _) = encode(ClientCodec::default(), &[message]);
                prop_assert_eq!(&again[..], &frame[..]);
            }
            Ok(None) => prop_assert!(false, "a whole frame was not decoded"),
            Err(error) => prop_assert!(error.is_protocol_violation()),
        }
        prop_assert!(src.is_empty());

        let mut src = BytesMut::from(&frame[..]);
        match ClientCodec::default().decode(&mut src) {
            Ok(Some(message)) => {
                let (again, _) = encode(ServerCodec::default(), &[message]);
                prop_assert_eq!(&again[..], &frame[..]);
            }
            Ok(None) => prop_assert!(false, "a whole frame was not decoded"),
            Err(error) => prop_assert!(error.is_protocol_violation()),
        }
        prop_assert!(src.is_empty());
    }

    /// A prefix above the maximum is refused from its 4 bytes alone: nothing is consumed and the
    /// buffer's capacity does not change (no allocation for the announced body).
    #[test]
    fn oversized_prefix_is_refused_without_allocating(
        max_frame in prop_oneof![Just(DEFAULT_MAX_FRAME_BYTES), 1usize..100_000],
        excess in 1u64..=u64::from(u32::MAX),
        tail in vec(any::<u8>(), 0..64),
    ) {
        let len = (max_frame as u64 + excess).min(u64::from(u32::MAX)) as u32;
        prop_assume!(len as usize > max_frame);
        let mut bytes = prefix(len).to_vec();
        bytes.extend_from_slice(&tail);

        let mut src = BytesMut::from(&bytes[..]);
        let capacity = src.capacity();
        let error = ServerCodec::new(max_frame).decode(&mut src).expect_err("oversized");
        prop_assert!(
            matches!(error, CodecError::FrameTooLarge { len: l, max } if l == len as usize && max == max_frame),
            "{:?}", error
        );
        prop_assert_eq!(src.capacity(), capacity);
        prop_assert_eq!(&src[..], &bytes[..]);

        let mut src = BytesMut::from(&bytes[..]);
        let error = ClientCodec::new(max_frame).decode_eof(&mut src).expect_err("oversized");
        let is_too_large = matches!(error, CodecError::FrameTooLarge { .. });
        prop_assert!(is_too_large);
        prop_assert_eq!(src.capacity(), capacity);
    }

    /// For an acceptable prefix the decoder reserves room for the whole frame, and no more than
    /// the buffer's own growth policy gives.
    ///
    /// The bound: `decode` asks `BytesMut::reserve` for exactly the missing bytes of the frame.
    /// `BytesMut` (through `Vec`'s amortised growth) may round a reservation up to twice the
    /// buffer's previous capacity, never more. So the capacity afterwards is at most
    /// `max(HEADER_LEN + len, 2 × capacity before)`, and since `len ≤ max_frame`, at most
    /// `max(HEADER_LEN + max_frame, 2 × capacity before)`. With a prefix of 4 GiB and a maximum of
    /// 64 KiB this is what keeps a hostile peer from making the server allocate gigabytes.
    /// Feeding the rest of the body then needs no further allocation.
    #[test]
    fn acceptable_prefix_reserves_at_most_one_frame(
        max_frame in prop_oneof![Just(DEFAULT_MAX_FRAME_BYTES), 1usize..5_000],
        len_seed in any::<u32>(),
        have_seed in any::<u32>(),
    ) {
        let len = 1 + (len_seed as usize % max_frame);
        let have = have_seed as usize % len; // body bytes already buffered, fewer than len
        let mut bytes = prefix(len as u32).to_vec();
        bytes.resize(HEADER_LEN + have, 0);
        let mut src = BytesMut::from(&bytes[..]);
        let before = src.capacity();
        let mut codec = ServerCodec::new(max_frame);

        prop_assert!(codec.decode(&mut src).expect("waiting").is_none());
        let after = src.capacity();
        prop_assert!(after >= HEADER_LEN + len, "room for the frame: {} < {}", after, HEADER_LEN + len);
        prop_assert!(after <= (HEADER_LEN + len).max(2 * before), "reserved {} for a {}-byte frame", after, len);
        prop_assert!(after <= (HEADER_LEN + max_frame).max(2 * before));
        prop_assert_eq!(src.len(), bytes.len());

        // The rest of the body trickles in without any reallocation, then decodes.
        for _ in have..len {
            prop_assert!(codec.decode(&mut src).expect("waiting").is_none());
            src.extend_from_slice(&[0]);
            prop_assert_eq!(src.capacity(), after);
        }
        // A zero-filled body has kind byte 0, which is no message.
        let error = codec.decode(&mut src).expect_err("kind 0");
        prop_assert!(matches!(error, CodecError::UnknownKind(0)));
        prop_assert!(src.is_empty());
    }

    /// End of stream inside a frame, at any point, is `Truncated` with the exact count; at a frame
    /// boundary it is a clean end.
    #[test]
    fn end_of_stream_inside_a_frame_is_truncated(message in client_message(), cut_seed in any::<usize>()) {
        let (bytes, _) = encode(ClientCodec::default(), &[message]);
        let cut = 1 + cut_seed % (bytes.len() - 1);
        let mut src = BytesMut::from(&bytes[..cut]);
        let mut codec = ServerCodec::default();
        prop_assert!(codec.decode(&mut src).expect("waiting").is_none());
        let end = codec.decode_eof(&mut src);
        prop_assert!(matches!(end, Err(CodecError::Truncated { buffered }) if buffered == cut), "{:?}", end);
    }

}

// ---------------------------------------------------------------------------------------------
// Unit tests

#[test]
fn empty_buffer_at_end_of_stream_is_a_clean_end() {
    let mut src = BytesMut::new();
    assert!(matches!(
        ServerCodec::default().decode_eof(&mut src),
        Ok(None)
    ));
    assert!(matches!(
        ClientCodec::default().decode_eof(&mut src),
        Ok(None)
    ));
}

#[test]
fn end_of_stream_right_after_a_frame_is_a_clean_end() {
    let (bytes, _) = encode(ClientCodec::default(), &[ClientMessage::Ping { nonce: 9 }]);
    let mut src = BytesMut::from(&bytes[..]);
    let mut codec = ServerCodec::default();
    assert_eq!(
        codec.decode_eof(&mut src).expect("a whole frame"),
        Some(ClientMessage::Ping { nonce: 9 })
    );
    assert!(matches!(codec.decode_eof(&mut src), Ok(None)));
}

#[test]
fn zero_prefix_is_an_empty_frame() {
    let mut src = BytesMut::from(&[0u8, 0, 0, 0, 3][..]);
    assert!(matches!(
        ServerCodec::default().decode(&mut src),
        Err(CodecError::EmptyFrame)
    ));
}

#[test]
fn prefix_at_the_maximum_is_accepted_and_one_above_is_not() {
    let max = 300;
    let mut body = vec![Kind::Input as u8];
    body.extend_from_slice(&7u64.to_be_bytes());
    body.resize(max, 0xab);
    let mut frame = prefix(max as u32).to_vec();
    frame.extend_from_slice(&body);
    let mut src = BytesMut::from(&frame[..]);
    let decoded = ServerCodec::new(max)
        .decode(&mut src)
        .expect("at the maximum");
    assert!(
        matches!(decoded, Some(ClientMessage::Input { seq: 7, ref payload }) if payload.len() == max - 9)
    );

    let mut src = BytesMut::from(&frame[..]);
    let error = ServerCodec::new(max - 1)
        .decode(&mut src)
        .expect_err("one above");
    assert!(matches!(
        error,
        CodecError::FrameTooLarge { len: 300, max: 299 }
    ));
}

#[test]
fn encoder_refuses_frames_above_the_maximum_and_leaves_the_buffer_alone() {
    let mut codec = ClientCodec::new(100);
    let mut dst = BytesMut::from(&b"earlier"[..]);
    let fits = ClientMessage::Input {
        seq: 1,
        payload: Bytes::from(vec![0; 91]),
    };
    codec.encode(&fits, &mut dst).expect("a 100-byte body fits");
    assert_eq!(dst.len(), 7 + HEADER_LEN + 100);

    let too_big = ClientMessage::Input {
        seq: 1,
        payload: Bytes::from(vec![0; 92]),
    };
    let before = dst.clone();
    let error = codec.encode(&too_big, &mut dst).expect_err("101 bytes");
    assert!(matches!(
        error,
        CodecError::FrameTooLarge { len: 101, max: 100 }
    ));
    assert_eq!(dst, before);
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    let hello = |player_id: &str, room: &str, token: Option<String>| {
        ClientMessage::Hello(Box::new(Hello {
            auth_token: token,
            ..Hello::new(player_id, room)
        }))
    };
    let long = "x".repeat(65);
    let too_many_options = Bytes::from(vec![0; MAX_OPTIONS_BYTES + 1]);
    let join = |room: &str, options: &Bytes| ClientMessage::Join {
        room: room.into(),
        options: options.clone(),
    };
    let refused = [
        hello("", "", None),
        hello(&long, "", None),
        hello("ann", &long, None),
        hello("ann", "", Some("t".repeat(513))),
        ClientMessage::Hello(Box::new(Hello {
            options: too_many_options.clone(),
            ..Hello::new("ann", "")
        })),
        join("", &Bytes::new()),
        join(&long, &Bytes::new()),
        join("lobby", &too_many_options),
    ];
    for message in refused {
        let mut dst = BytesMut::from(&b"kept"[..]);
        let error = ClientCodec::default()
            .encode(&message, &mut dst)
            .expect_err("refused");
        assert!(
            matches!(error, CodecError::Malformed { .. }),
            "{message:?}: {error:?}"
        );
        assert_eq!(&dst[..], b"kept", "{message:?} left bytes behind");
    }

    let mut dst = BytesMut::new();
    let error = ServerCodec::default()
        .encode(ServerMessage::Joined { room: long }, &mut dst)
        .expect_err("refused");
    assert!(matches!(
        error,
        CodecError::Malformed {
            kind: Kind::Joined,
            ..
        }
    ));
    assert!(dst.is_empty());

    // The limits themselves are accepted.
    let max_id = "é".repeat(32); // 64 bytes
    let mut dst = BytesMut::new();
    ClientCodec::default()
        .encode(hello(&max_id, &max_id, Some("t".repeat(512))), &mut dst)
        .expect("limits are inclusive");
}

#[test]
fn a_decoding_error_consumes_the_bad_frame_only() {
    // An unknown kind, then a good Ping: the error consumes exactly the bad frame.
    let mut bytes = vec![0, 0, 0, 2, 0x0c, 0xff];
    bytes.extend_from_slice(&[0, 0, 0, 9, 3, 0, 0, 0, 0, 0, 0, 0, 5]);
    let mut src = BytesMut::from(&bytes[..]);
    let mut codec = ServerCodec::default();
    assert!(matches!(
        codec.decode(&mut src),
        Err(CodecError::UnknownKind(0x0c))
    ));
    assert_eq!(src.len(), 13);
    assert_eq!(
        codec.decode(&mut src).expect("the ping"),
        Some(ClientMessage::Ping { nonce: 5 })
    );
}

#[test]
fn protocol_violations_are_told_from_ends_of_stream() {
    assert!(CodecError::EmptyFrame.is_protocol_violation());
    assert!(CodecError::UnknownKind(0).is_protocol_violation());
    assert!(CodecError::WrongDirection(Kind::Hello).is_protocol_violation());
    assert!(CodecError::FrameTooLarge { len: 2, max: 1 }.is_protocol_violation());
    assert!(!CodecError::Truncated { buffered: 1 }.is_protocol_violation());
    assert!(!CodecError::Io(std::io::ErrorKind::ConnectionReset.into()).is_protocol_violation());
}

#[test]
fn every_bye_code_has_its_wire_value() {
    for (i, code) in ByeCode::ALL.iter().enumerate() {
        assert_eq!(*code as u8 as usize, i + 1);
        assert_eq!(ByeCode::from_u8(*code as u8), Some(*code));
    }
    assert_eq!(ByeCode::from_u8(0), None);
    assert_eq!(ByeCode::from_u8(16), None);
    assert_eq!(ByeCode::VersionMismatch.as_str(), "version_mismatch");
}

#[test]
fn resume_token_debug_does_not_print_the_secret() {
    let token = ResumeToken([0xab; 16]);
    let printed = format!("{token:?}");
    assert!(!printed.contains("abababab"), "{printed}");
    assert!(ResumeToken::NONE.is_none());
    assert!(!token.is_none());
}

/// `MAX_HELLO_BODY` is exactly the body of the largest `Hello` there can be, and a decoder limited
/// to it still reads that `Hello`.
#[test]
fn the_largest_hello_is_max_hello_body_long() {
    let hello = ClientMessage::Hello(Box::new(Hello {
        version: PROTOCOL_VERSION,
        player_id: "p".repeat(MAX_PLAYER_ID_BYTES),
        room: "r".repeat(MAX_ROOM_BYTES),
        auth_token: Some("t".repeat(MAX_AUTH_TOKEN_BYTES)),
        resume: Some(Resume {
            token: ResumeToken([7; RESUME_TOKEN_LEN]),
            last_event_seq: u64::MAX,
        }),
        options: Bytes::from(vec![0xff; MAX_OPTIONS_BYTES]),
    }));
    let mut frame = BytesMut::new();
    ClientCodec::default()
        .encode(hello.clone(), &mut frame)
        .expect("encode");
    assert_eq!(frame.len(), HEADER_LEN + MAX_HELLO_BODY);
    assert_eq!(MAX_HELLO_BODY, 1699, "PROTOCOL.md states 1699");
    let mut codec = ServerCodec::new(MAX_HELLO_BODY);
    assert_eq!(codec.decode(&mut frame).expect("decodes"), Some(hello));
    let mut longer = BytesMut::from(&[0, 0, 0x06, 0xa4][..]);
    assert!(matches!(
        codec.decode(&mut longer),
        Err(CodecError::FrameTooLarge { len: 1700, .. })
    ));
}
