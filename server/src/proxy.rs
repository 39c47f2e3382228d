//! PROXY protocol (versions 1 and 2) on the game port: the header a load balancer puts before a
//! client's bytes to say whose connection it is.
//!
//! Off unless `net.proxy_protocol.trusted` names balancers. From those, every connection must
//! start with a header (a `LOCAL` one, a balancer's own check, keeps the balancer's address);
//! from anyone else a header is refused: a client must not be able to claim another's address.
//! The header is read exactly (the bytes after it stay in the socket for the session), within the
//! session's handshake timeout.

use std::net::SocketAddr;
use std::time::Duration;

use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The `result` labels of `gameserver_proxy_headers_total`.
pub const RESULTS: [&str; 4] = ["ok", "missing", "invalid", "untrusted"];

/// The longest header read: a version 2 header with the usual TLVs fits (the specification asks
/// receivers to accept 536 bytes); a version 1 header is at most 107.
pub const MAX_HEADER: usize = 536;

/// While a header is incomplete, how long to wait before looking at the socket again. Headers
/// arrive in one segment in practice; this only paces a sender that dribbles.
const RECHECK: Duration = Duration::from_millis(5);

/// Why a connection from a trusted balancer has no usable header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// The connection does not start with a PROXY header.
    #[error("the connection comes from a trusted balancer but does not start with a PROXY header")]
    Missing,
    /// It starts like one but is malformed or too long.
    #[error("malformed PROXY header: {0}")]
    Invalid(String),
    /// The socket failed or closed before the header was complete.
    #[error("the connection ended inside its PROXY header: {0}")]
    Io(#[source] std::io::Error),
}

impl HeaderError {
    /// The metric label.
    pub fn result(&self) -> &'static str {
        match self {
            HeaderError::Missing => "missing",
            HeaderError::Invalid(_) | HeaderError::Io(_) => "invalid",
        }
    }
}

/// True when `bytes` (the first bytes of a connection) begin a PROXY header rather than a frame:
/// a frame's length prefix starts with a zero byte, a header with `P` (v1) or `\r` (v2).
pub fn looks_like_header(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'P' | b'\r'))
}

/// Reads the PROXY header at the start of `stream` and returns the client's address, or `None`
/// for a `LOCAL` header. Leaves every byte after the header unread. The caller bounds the wait.
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    loop {
        let n = stream.peek(&mut buf).await.map_err(HeaderError::Io)?;
        if n == 0 {
            return Err(HeaderError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        if !looks_like_header(&buf[..n]) {
            return Err(HeaderError::Missing);
        }
        match ProxyHeader::parse(&buf[..n], config) {
            Ok((header, len)) => {
                let source = header.proxied_address().map(|a| a.source);
                // Consume exactly the header; the session reads the rest.
                let mut consumed = [0u8; MAX_HEADER];
                stream
                    .read_exact(&mut consumed[..len])
                    .await
                    .map_err(HeaderError::Io)?;
                return Ok(source);
            }
            Err(proxy_header::Error::BufferTooShort) if n < MAX_HEADER => {
                tokio::time::sleep(RECHECK).await;
            }
            Err(proxy_header::Error::BufferTooShort) => {
                return Err(HeaderError::Invalid(format!(
                    "longer than {MAX_HEADER} bytes"
                )));
            }
            Err(error) => return Err(HeaderError::Invalid(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_header::ProxiedAddress;
    use tokio::io::AsyncWriteExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    fn header(v2: bool) -> Vec<u8> {
        let header = ProxyHeader::with_address(ProxiedAddress::stream(
            "203.0.113.7:4242".parse().expect("addr"),
            "10.0.0.1:7777".parse().expect("addr"),
        ));
        let mut out = Vec::new();
        if v2 {
            header.encode_v2(&mut out).expect("encode");
        } else {
            header.encode_v1(&mut out).expect("encode");
        }
        out
    }

    #[tokio::test]
    async fn both_versions_give_the_client_address_and_leave_the_rest_unread() {
        for v2 in [false, true] {
            let (mut client, mut server) = pair().await;
            let mut sent = header(v2);
            sent.extend_from_slice(b"\0\0\0\x05after");
            // In two pieces: the reader waits for the rest of the header.
            client.write_all(&sent[..7]).await.expect("write");
            let reading = tokio::spawn(async move {
                let source = read_header(&mut server).await;
                (source, server)
            });
            tokio::time::sleep(Duration::from_millis(30)).await;
            client.write_all(&sent[7..]).await.expect("write");
            let (source, mut server) = reading.await.expect("task");
            assert_eq!(
                source.expect("a header"),
                Some("203.0.113.7:4242".parse().expect("addr"))
            );
            let mut rest = [0u8; 9];
            server.read_exact(&mut rest).await.expect("read");
            assert_eq!(&rest, b"\0\0\0\x05after");
        }
    }

    #[tokio::test]
    async fn a_frame_where_a_header_belongs_is_missing_and_garbage_is_invalid() {
        let (mut client, mut server) = pair().await;
        client.write_all(b"\0\0\0\x05hello").await.expect("write");
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderError::Missing)
        ));
        let (mut client, mut server) = pair().await;
        client
            .write_all(b"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\n")
            .await
            .expect("write");
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderError::Invalid(_))
        ));
    }
}
