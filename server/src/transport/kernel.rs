//! The kernel's view of a TCP connection (`TCP_INFO`), read at the moment a session is judged
//! over: what tells a bad network (retransmissions, unacknowledged segments, a long silence the
//! kernel saw too) from a crashed client (a reset, or a FIN the kernel already holds).

use std::os::fd::AsRawFd;

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
    let info = tcp_info(stream)?;
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
    })
}

/// The one unsafe call of the crate: no well-kept crate reads `TCP_INFO` (socket2 and nix do not
/// offer it).
#[allow(unsafe_code)]
fn tcp_info(stream: &TcpStream) -> Option<libc::tcp_info> {
    // All-zero is a valid `tcp_info` (plain integers); the kernel fills what it knows, at most
    // `len` bytes.
    let mut info: libc::tcp_info = bytes_of_zero();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the descriptor is open for as long as `stream` is borrowed; `info` is a writable
    // `tcp_info` of `len` bytes, and the kernel writes at most `len` bytes and updates `len`.
    let result = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
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
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_live_connection_and_one_the_peer_closed_read_as_such() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut client = TcpStream::connect(listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        client.write_all(b"hello").await.expect("write");
        client.flush().await.expect("flush");
        let view = read(&server).expect("TCP_INFO");
        assert_eq!(view.state, "established");
        assert_eq!(view.unacked, 0);
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
