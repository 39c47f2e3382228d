//! The connection a session runs over: plain TCP, TLS over TCP (rustls), and WebSocket over
//! either (one frame per binary message, crate `game-websocket`).
//!
//! [`Link`] is one byte stream every way, with the TCP connection underneath within reach for
//! what only a socket can do (a reset with `SO_LINGER {on, 0}`, a look at unread bytes). A TLS
//! link ends like a TCP one: the server's `close_notify` and FIN, or a FIN alone, read as the end
//! of the stream; a reset as a reset.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use game_websocket::WsStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};

/// A connection to the game server.
#[derive(Debug)]
pub enum Link {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsStream<TcpStream>>),
    /// WebSocket over a plain or a TLS link.
    WebSocket(Box<WsStream<Link>>),
}

impl Link {
    /// The TCP connection underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Link::Tcp(stream) => stream,
            Link::Tls(stream) => stream.get_ref().0,
            Link::WebSocket(stream) => stream.get_ref().tcp(),
        }
    }

    /// The WebSocket opening handshake to `url` (`ws://host:port/path`, or `wss://` over TLS)
    /// over this link.
    pub async fn upgrade(self, url: &str) -> io::Result<Link> {
        let config = game_websocket::config(protocol::DEFAULT_MAX_FRAME_BYTES);
        let (ws, _) = tokio_tungstenite::client_async_with_config(url, self, Some(config))
            .await
            .map_err(|error| match error {
                tokio_tungstenite::tungstenite::Error::Io(error) => error,
                // A balancer or proxy in front with nowhere to send the upgrade now (502,
                // 503, 504): like a refused connect, worth another try.
                tokio_tungstenite::tungstenite::Error::Http(response)
                    if response.status().is_server_error() =>
                {
                    io::Error::new(
                        io::ErrorKind::ConnectionRefused,
                        format!("the WebSocket upgrade was answered {}", response.status()),
                    )
                }
                // The server closed the connection before its answer was complete.
                tokio_tungstenite::tungstenite::Error::Protocol(
                    tokio_tungstenite::tungstenite::error::ProtocolError::HandshakeIncomplete,
                ) => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the connection ended before the server answered the WebSocket upgrade",
                ),
                other => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the WebSocket upgrade failed: {other}"),
                ),
            })?;
        Ok(Link::WebSocket(Box::new(WsStream::new(ws))))
    }

    /// Makes the next close a reset (`SO_LINGER {on, 0}`): the kernel sends RST and drops
    /// whatever is unsent.
    pub fn set_abortive(&self) -> io::Result<()> {
        socket2::SockRef::from(self.tcp()).set_linger(Some(std::time::Duration::ZERO))
    }
}

/// Makes a link of a connected socket: the TLS handshake with `tls`, then the WebSocket
/// upgrade to `websocket` (a URL), each when given.
pub async fn open(
    stream: TcpStream,
    tls: Option<&Tls>,
    websocket: Option<&str>,
) -> io::Result<Link> {
    let link = match tls {
        Some(tls) => tls.handshake(stream).await.map_err(|error| {
            io::Error::new(error.kind(), format!("the TLS handshake failed: {error}"))
        })?,
        None => Link::Tcp(stream),
    };
    match websocket {
        Some(url) => link.upgrade(url).await,
        None => Ok(link),
    }
}

impl AsyncRead for Link {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(stream) => Pin::new(stream).poll_read(cx, buf),
            // A FIN without close_notify is an end of stream like over TCP: where it falls
            // (between frames or inside one) says how the connection ended.
            Link::Tls(stream) => match Pin::new(stream).poll_read(cx, buf) {
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
            Link::WebSocket(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Link::Tcp(stream) => Pin::new(stream).poll_write(cx, buf),
            Link::Tls(stream) => Pin::new(stream).poll_write(cx, buf),
            Link::WebSocket(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(stream) => Pin::new(stream).poll_flush(cx),
            Link::Tls(stream) => Pin::new(stream).poll_flush(cx),
            Link::WebSocket(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    /// The FIN (after `close_notify` over TLS); reading goes on.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Link::Tcp(stream) => Pin::new(stream).poll_shutdown(cx),
            Link::Tls(stream) => Pin::new(stream).poll_shutdown(cx),
            Link::WebSocket(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A TLS setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {problem}")]
    CaFile {
        /// The file.
        path: String,
        /// What is wrong.
        problem: String,
    },
    /// Not a DNS name or an IP address.
    #[error("{0:?} is not a server name (a DNS name or an IP address)")]
    ServerName(String),
}

/// How to open TLS links: whom to trust and which name the server's certificate must carry.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with a rustls configuration of the caller's, for a server certified as
    /// `server_name`.
    pub fn new(config: Arc<rustls::ClientConfig>, server_name: &str) -> Result<Tls, TlsError> {
        let server_name = ServerName::try_from(server_name.to_owned())
            .map_err(|_| TlsError::ServerName(server_name.to_owned()))?;
        Ok(Tls {
            connector: TlsConnector::from(config),
            server_name,
        })
    }

    /// TLS trusting the certificates of a PEM file (a private CA, or a self-signed server
    /// certificate), or with `None` the public web's roots (Mozilla's, as `webpki-roots` ships
    /// them).
    pub fn trusting(ca_file: Option<&Path>, server_name: &str) -> Result<Tls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            Some(path) => {
                let problem = |problem: String| TlsError::CaFile {
                    path: path.display().to_string(),
                    problem,
                };
                let certificates = CertificateDer::pem_file_iter(path)
                    .map_err(|error| problem(error.to_string()))?
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|error| problem(error.to_string()))?;
                if certificates.is_empty() {
                    return Err(problem("no \"BEGIN CERTIFICATE\" block in it".into()));
                }
                for certificate in certificates {
                    roots
                        .add(certificate)
                        .map_err(|error| problem(error.to_string()))?;
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::CaFile {
                path: String::new(),
                problem: error.to_string(),
            })?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Tls::new(Arc::new(config), server_name)
    }

    /// The client side of the handshake over a connected socket.
    pub async fn handshake(&self, stream: TcpStream) -> io::Result<Link> {
        let stream = self
            .connector
            .connect(self.server_name.clone(), stream)
            .await?;
        Ok(Link::Tls(Box::new(stream)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::end::{End, Transport};

    /// Answers one WebSocket upgrade request with `status`, and tells how the client took it.
    async fn upgrade_answered(status: &'static str) -> End {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).await.unwrap();
                request.push(byte[0]);
            }
            let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            stream.write_all(answer.as_bytes()).await.unwrap();
        });
        let stream = TcpStream::connect(addr).await.unwrap();
        let error = Link::Tcp(stream)
            .upgrade(&format!("ws://{addr}/"))
            .await
            .unwrap_err();
        server.await.unwrap();
        End::of_opening(&error)
    }

    #[tokio::test]
    async fn a_proxy_with_nowhere_to_send_the_upgrade_is_retried_and_a_refusal_is_not() {
        assert_eq!(
            upgrade_answered("503 Service Unavailable").await,
            End::Transport(Transport::Refused)
        );
        assert!(matches!(
            upgrade_answered("404 Not Found").await,
            End::Opening(text) if text.contains("404")
        ));
    }
}
