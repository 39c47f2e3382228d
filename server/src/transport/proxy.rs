//! PROXY protocol (versions 1 and 2) on the game port: the header a load balancer puts before a
//! client's bytes to say whose connection it is.
//!
//! Off unless `net.proxy_protocol.trusted` names balancers. From those, every connection must
//! start with a header (a `LOCAL` one, a balancer's own check, keeps the balancer's address);
//! from anyone else a header is refused: a client must not be able to claim another's address.
//! The header is read exactly (the bytes after it stay in the socket for the session), within the
//! session's handshake timeout.

use std::net::SocketAddr;

use proxy_header::{ParseConfig, ProxyHeader};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::transport::labels::ProxyResult;

/// The longest header read: a version 2 header with the usual TLVs fits (the specification asks
/// receivers to accept 536 bytes); a version 1 header is at most 107.
pub const MAX_HEADER: usize = 536;

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
    /// What it counts as.
    pub fn result(&self) -> ProxyResult {
        match self {
            HeaderError::Missing => ProxyResult::Missing,
            HeaderError::Invalid(_) | HeaderError::Io(_) => ProxyResult::Invalid,
        }
    }
}

/// True when `bytes` (the first bytes of a connection) begin a PROXY header rather than a frame:
/// a frame's length prefix starts with a zero byte, a header with `P` (v1) or `\r` (v2).
pub fn looks_like_header(bytes: &[u8]) -> bool {
    matches!(bytes.first(), Some(b'P' | b'\r'))
}

/// The signature that starts a version 2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// The fixed part of a version 2 header: the signature, version and command, family, length.
const V2_FIXED: usize = 16;
/// The longest version 1 header (the specification's 107 bytes, CRLF included).
const V1_MAX: usize = 107;

/// Reads the PROXY header at the start of `stream` and returns the client's address, or `None`
/// for a `LOCAL` header. Reads exactly the header, never a byte past it, so every byte after it
/// stays in the socket for the session: a version 2 header says its length after 16 bytes, a
/// version 1 header is read up to its line end. Every read waits for the socket to become
/// readable: a balancer (or anyone at its address) sending half a header costs a parked task,
/// not a polling loop. The caller bounds the wait.
pub async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, HeaderError> {
    let mut buf = [0u8; MAX_HEADER];
    stream
        .read_exact(&mut buf[..1])
        .await
        .map_err(HeaderError::Io)?;
    let len = match buf[0] {
        b'P' => {
            let mut len = 1;
            while buf[len - 1] != b'\n' {
                if len == V1_MAX {
                    return Err(HeaderError::Invalid(format!(
                        "a version 1 header longer than {V1_MAX} bytes"
                    )));
                }
                stream
                    .read_exact(&mut buf[len..=len])
                    .await
                    .map_err(HeaderError::Io)?;
                len += 1;
            }
            len
        }
        b'\r' => {
            stream
                .read_exact(&mut buf[1..V2_FIXED])
                .await
                .map_err(HeaderError::Io)?;
            if &buf[..V2_SIGNATURE.len()] != V2_SIGNATURE {
                return Err(HeaderError::Invalid(
                    "starts like a version 2 header but without its signature".into(),
                ));
            }
            let rest = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
            if V2_FIXED + rest > MAX_HEADER {
                return Err(HeaderError::Invalid(format!(
                    "{} bytes; at most {MAX_HEADER} are read",
                    V2_FIXED + rest
                )));
            }
            stream
                .read_exact(&mut buf[V2_FIXED..V2_FIXED + rest])
                .await
                .map_err(HeaderError::Io)?;
            V2_FIXED + rest
        }
        _ => return Err(HeaderError::Missing),
    };
    let config = ParseConfig {
        include_tlvs: false,
        allow_v1: true,
        allow_v2: true,
    };
    match ProxyHeader::parse(&buf[..len], config) {
        Ok((header, used)) if used == len => Ok(header.proxied_address().map(|a| a.source)),
        Ok((_, used)) => Err(HeaderError::Invalid(format!(
            "the header parsed as {used} bytes of the {len} it announced"
        ))),
        Err(error) => Err(HeaderError::Invalid(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use proxy_header::ProxiedAddress;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

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

    /// A header that arrives a byte at a time is read exactly, and never a byte past it: the
    /// frame behind it (here pipelined in the same writes) is the session's.
    #[tokio::test]
    async fn a_dribbled_header_is_read_exactly_whatever_follows_it() {
        for v2 in [false, true] {
            let (mut client, mut server) = tokio::io::duplex(4096);
            let mut sent = header(v2);
            sent.extend_from_slice(b"\0\0\0\x02hi");
            let writer = tokio::spawn(async move {
                for byte in sent {
                    client.write_all(&[byte]).await.expect("write");
                    tokio::task::yield_now().await;
                }
                client
            });
            let source = read_header(&mut server).await.expect("a header");
            assert_eq!(source, Some("203.0.113.7:4242".parse().expect("addr")));
            let _client = writer.await.expect("writer");
            let mut rest = [0u8; 6];
            server.read_exact(&mut rest).await.expect("read");
            assert_eq!(&rest, b"\0\0\0\x02hi");
        }
    }

    #[tokio::test]
    async fn an_overlong_header_of_either_version_is_invalid() {
        let (mut client, mut server) = tokio::io::duplex(4096);
        let mut long = b"PROXY TCP4 ".to_vec();
        long.extend(std::iter::repeat_n(b'1', 200));
        client.write_all(&long).await.expect("write");
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderError::Invalid(_))
        ));
        let (mut client, mut server) = tokio::io::duplex(4096);
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([0x21, 0x11]);
        v2.extend(2000u16.to_be_bytes());
        client.write_all(&v2).await.expect("write");
        assert!(matches!(
            read_header(&mut server).await,
            Err(HeaderError::Invalid(_))
        ));
    }
}
