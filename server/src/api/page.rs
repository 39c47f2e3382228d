//! The pages a game serves to browser players from the admin port ([`crate::Server::page`],
//! [`crate::App::page`]): static HTML in which the engine fills in where its WebSocket listener
//! is.

/// Written in a page's HTML ([`crate::App::page`]), replaced by the WebSocket listener's port whenever
/// the page is served: how a browser client finds the listener, whose port may be picked at
/// start (port 0).
pub const WEBSOCKET_PORT_PLACEHOLDER: &str = "{{websocket_port}}";

/// In a page served with [`crate::Server::page`], replaced by the scheme of the WebSocket listener:
/// `wss` when the server speaks TLS (`[tls]`), `ws` otherwise.
pub const WEBSOCKET_SCHEME_PLACEHOLDER: &str = "{{websocket_scheme}}";

/// In a page served with [`crate::Server::page`], replaced by the WebSocket origins besides the server's
/// own that the page may connect to (`admin.page_websocket_origins`), separated by spaces: a
/// page pointed elsewhere (`?ws=`) must refuse any other. The page's Content-Security-Policy
/// holds the browser to the same list.
pub const WEBSOCKET_ORIGINS_PLACEHOLDER: &str = "{{websocket_origins}}";
