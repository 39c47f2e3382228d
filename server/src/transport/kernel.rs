//! The kernel's view of a TCP connection (`TCP_INFO`), read at the moment a session is judged
//! over: what tells a bad network (retransmissions, unacknowledged segments, a long silence the
//! kernel saw too) from a crashed client (a reset, or a FIN the kernel already holds).

use std::os::fd::{AsRawFd, RawFd};

use serde::Serialize;
use tokio::net::TcpStream;

/// What the kernel knew of a connection, in the units operators read (`ss -ti` shows the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TcpView {
    /// The TCP state (`established`, `close_wait` once the peer's FIN arrived, `close` after a
    /// reset, ...).
    pub state: &'static str,
    /// Smoothed round-trip time, microseconds.
    pub rtt_us: u32,
    /// Its variance, microseconds.
    pub rttvar_us: u32,
    /// Current retransmission timeout, microseconds.
    pub rto_us: u32,
    /// Retransmissions of the oldest unacknowledged segment so far (backing off).
    pub retransmits: u8,
    /// Zero-window or keepalive probes sent without an answer.
    pub probes: u8,
    /// Segments retransmitted over the connection's life.
    pub total_retrans: u32,
    /// Segments sent and not acknowledged.
    pub unacked: u32,
    /// Segments the kernel counts as lost.
    pub lost: u32,
    /// Milliseconds since data was last received.
    pub last_data_recv_ms: u32,
    /// Milliseconds since data was last sent.
    pub last_data_sent_ms: u32,
    /// Milliseconds since an acknowledgement was last received.
    pub last_ack_recv_ms: u32,
    /// Packets that arrived out of order over the connection's life: data the peer sent behind
    /// a segment the network lost.
    pub rcv_ooopack: u32,
}

/// The names `ss` uses, by `tcpi_state` (include/net/tcp_states.h).
fn state_name(state: u8) -> &'static str {
    match state {
        1 => "established",
        2 => "syn_sent",
        3 => "syn_recv",
        4 => "fin_wait1",
        5 => "fin_wait2",
        6 => "time_wait",
        7 => "close",
        8 => "close_wait",
        9 => "last_ack",
        10 => "listen",
        11 => "closing",
        _ => "unknown",
    }
}

/// Reads `TCP_INFO` of `stream`; `None` if the kernel refuses (never expected on Linux).
pub fn read(stream: &TcpStream) -> Option<TcpView> {
    read_fd(stream.as_raw_fd())
}

/// [`read`] by descriptor, for a session whose socket is split into halves. A descriptor that is
/// not (or no longer) a TCP socket reads as `None`.
pub fn read_fd(fd: RawFd) -> Option<TcpView> {
    let info = tcp_info(fd)?;
    Some(TcpView {
        state: state_name(info.tcpi_state),
        rtt_us: info.tcpi_rtt,
        rttvar_us: info.tcpi_rttvar,
        rto_us: info.tcpi_rto,
        retransmits: info.tcpi_retransmits,
        probes: info.tcpi_probes,
        total_retrans: info.tcpi_total_retrans,
        unacked: info.tcpi_unacked,
        lost: info.tcpi_lost,
        last_data_recv_ms: info.tcpi_last_data_recv,
        last_data_sent_ms: info.tcpi_last_data_sent,
        last_ack_recv_ms: info.tcpi_last_ack_recv,
        rcv_ooopack: info.tcpi_rcv_ooopack,
    })
}

/// The one unsafe call of the crate: no well-kept crate reads `TCP_INFO` (socket2 and nix do not
/// offer it).
#[allow(unsafe_code)]
fn tcp_info(fd: RawFd) -> Option<libc::tcp_info> {
    // All-zero is a valid `tcp_info` (plain integers); the kernel fills what it knows, at most
    // `len` bytes (an older kernel leaves the fields it does not know zero).
    let mut info: libc::tcp_info = bytes_of_zero();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is a writable `tcp_info` of `len` bytes, and the kernel writes at most `len`
    // bytes and updates `len`. Any descriptor is safe to ask: one that is not a TCP socket
    // fails with an error and writes nothing.
    let result = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            std::ptr::from_mut(&mut info).cast::<libc::c_void>(),
            &mut len,
        )
    };
    (result == 0).then_some(info)
}

#[allow(unsafe_code)]
fn bytes_of_zero() -> libc::tcp_info {
    // SAFETY: `tcp_info` is a C struct of integers only, for which all-zero bytes are valid.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A client and the server's end of one loopback connection.
    async fn connected() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (client, server)
    }

    #[tokio::test]
    async fn the_later_fields_are_filled_and_a_stale_descriptor_reads_as_nothing() {
        let (mut client, mut server) = connected().await;
        server.write_all(b"twelve bytes").await.expect("write");
        let mut got = [0u8; 12];
        client.read_exact(&mut got).await.expect("read");
        let info = tcp_info(server.as_raw_fd()).expect("TCP_INFO");
        // Fields Linux added in 5.4, next to the out-of-order count the loss grace reads: the
        // payload bytes sent, exactly what was written.
        assert_eq!(info.tcpi_bytes_sent, 12);
        assert_eq!(info.tcpi_bytes_retrans, 0);
        assert!(
            info.tcpi_snd_wnd > 0,
            "the peer's window: {}",
            info.tcpi_snd_wnd
        );
        assert!(
            read_fd(-1).is_none(),
            "a closed descriptor reads as nothing"
        );
    }

    #[tokio::test]
    async fn a_live_connection_and_one_the_peer_closed_read_as_such() {
        let (mut client, server) = connected().await;
        client.write_all(b"hello").await.expect("write");
        client.flush().await.expect("flush");
        let view = read(&server).expect("TCP_INFO");
        assert_eq!(view.state, "established");
        assert_eq!(view.unacked, 0);
        assert_eq!(
            view.rcv_ooopack, 0,
            "nothing arrives out of order on loopback"
        );
        drop(client);
        // The FIN reaches the server's kernel: close_wait until the server closes too.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while read(&server).expect("TCP_INFO").state != "close_wait" {
            assert!(
                std::time::Instant::now() < deadline,
                "the FIN never arrived"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
