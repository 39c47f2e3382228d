//! The browser page (`rooms::PLAY_PAGE`) against the protocol crate: the version, the message
//! kinds and the Bye codes its JavaScript writes out by hand are the protocol's, it asks the
//! server for the WebSocket port, and it loads nothing from elsewhere. What it does in a browser
//! is tested against the real server in tests/tests/browser.rs.

use protocol::{ByeCode, Kind, PROTOCOL_VERSION};
use rooms::PLAY_PAGE;

/// The text between `start` and the next `end` after it.
fn between(start: &str, end: &str) -> &'static str {
    let from = PLAY_PAGE
        .find(start)
        .unwrap_or_else(|| panic!("the page has no {start:?}"))
        + start.len();
    let len = PLAY_PAGE[from..]
        .find(end)
        .unwrap_or_else(|| panic!("nothing closes {start:?}"));
    &PLAY_PAGE[from..from + len]
}

#[test]
fn the_page_speaks_the_current_protocol_version() {
    let version: u16 = between("const PROTOCOL_VERSION = ", ";")
        .parse()
        .expect("a number");
    assert_eq!(version, PROTOCOL_VERSION);
}

#[test]
fn the_page_numbers_message_kinds_as_the_protocol_does() {
    let kinds = between("const KIND = {", "};");
    let mut seen = 0;
    for entry in kinds.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry.split_once(':').expect("NAME: value");
        let value = u8::from_str_radix(value.trim().trim_start_matches("0x"), 16).expect("hex");
        let kind = Kind::from_u8(value).unwrap_or_else(|| panic!("{name} = {value} is no kind"));
        let camel: String = name
            .split('_')
            .map(|word| word[..1].to_owned() + &word[1..].to_lowercase())
            .collect();
        assert_eq!(format!("{kind:?}"), camel, "{entry}");
        seen += 1;
    }
    assert!(seen >= 10, "{kinds}");
}

#[test]
fn the_page_names_bye_codes_as_the_protocol_does() {
    let names: Vec<&str> = between("const BYE_CODES = [", "];")
        .split(',')
        .map(|n| n.trim().trim_matches('\''))
        .filter(|n| !n.is_empty())
        .collect();
    let expected: Vec<&str> = ByeCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, expected);
    assert_eq!(
        between("const CLIENT_QUIT = ", ";"),
        (ByeCode::ClientQuit as u8).to_string()
    );
}

#[test]
fn the_page_takes_the_port_from_the_server_and_nothing_from_elsewhere() {
    assert!(PLAY_PAGE.contains(game_engine::page::WEBSOCKET_PORT_PLACEHOLDER));
    for external in ["src=", "href=", "url(", "@import", "http:", "https:"] {
        assert!(
            !PLAY_PAGE.contains(external),
            "the page must stand alone: it contains {external:?}"
        );
    }
}
