//! The browser page (`rooms::PLAY_PAGE`) against the protocol crate: the client it carries (the
//! TypeScript package, bundled into its inline script by `npm run page` in clients/typescript)
//! speaks the protocol's version and numbers message kinds and Bye codes as the protocol does, the
//! page asks the server for the WebSocket port, and it loads nothing from elsewhere. What it does
//! in a browser is tested against the real server in tests/tests/browser.rs; the package's codec
//! against every vector of PROTOCOL.md by its own tests (tests/tests/typescript_client.rs).

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
    let version: u16 = between("var PROTOCOL_VERSION = ", ";")
        .parse()
        .expect("a number");
    assert_eq!(version, PROTOCOL_VERSION);
}

#[test]
fn the_page_numbers_message_kinds_as_the_protocol_does() {
    let kinds = between("var Kind = {", "};");
    let mut seen = 0;
    for entry in kinds.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, value) = entry.split_once(':').expect("Name: value");
        let value: u8 = value.trim().parse().expect("a number");
        let kind = Kind::from_u8(value).unwrap_or_else(|| panic!("{name} = {value} is no kind"));
        assert_eq!(format!("{kind:?}"), name.trim(), "{entry}");
        seen += 1;
    }
    assert!(seen >= 10, "{kinds}");
}

#[test]
fn the_page_names_bye_codes_as_the_protocol_does() {
    let names: Vec<&str> = between("var BYE_CODES = [", "];")
        .split(',')
        .map(|n| n.trim().trim_matches('"'))
        .filter(|n| !n.is_empty())
        .collect();
    let expected: Vec<&str> = ByeCode::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names, expected);
    // The page numbers them from 1 in that order (`byeCodeNumber`), as the wire does.
    for (at, code) in ByeCode::ALL.iter().enumerate() {
        assert_eq!(usize::from(*code as u8), at + 1, "{code:?}");
    }
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
