//! Two network namespaces joined by a veth pair, for pulling a cable for real.
//!
//! Each fixture gets unique names (so parallel tests never collide) and removes its namespaces on
//! drop, even when the test fails. Nothing is added to the host's own namespace; traffic stays
//! between the fixture's two namespaces.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::is_root;
use crate::process::{ServerProcess, ServerSpec};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A server namespace and a client namespace joined by a veth pair on a /30.
#[derive(Debug)]
pub struct Pair {
    /// Server namespace name.
    pub server_ns: String,
    /// Client namespace name.
    pub client_ns: String,
    /// The client-side veth interface (inside the client namespace).
    pub client_if: String,
    /// The server-side veth interface (inside the server namespace).
    pub server_if: String,
    /// The server's address on the link.
    pub server_ip: Ipv4Addr,
    /// The client's address on the link.
    pub client_ip: Ipv4Addr,
}

/// Runs a program with its arguments, `args`; panics with its output unless it succeeds.
fn run(args: &[&str]) {
    crate::process::run(Command::new(args[0]).args(&args[1..])).expect_success();
}

/// Loads nftables `rules` in the namespace that `prefix` (`ip netns exec NS`) runs in; panics
/// unless nft takes them.
fn nft(prefix: &[&str; 4], rules: &str) {
    use std::io::Write;
    let mut child = Command::new(prefix[0])
        .args(&prefix[1..])
        .args(["nft", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn nft");
    child
        .stdin
        .take()
        .expect("nft stdin")
        .write_all(rules.as_bytes())
        .expect("write nft rules");
    assert!(
        child.wait().expect("nft").success(),
        "nft rules failed: {rules}"
    );
}

impl Pair {
    /// Creates the namespaces and the link. `tag` makes the names readable in `ip netns`. Needs
    /// root and `ip` (see [`crate::need`]).
    pub fn new(tag: &str) -> Pair {
        crate::need(is_root(), "network namespaces need root");
        crate::need_tools(&["ip"], "iproute2");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id() % 100_000, n);
        let server_ns = format!("gs-{tag}-s{id}");
        let client_ns = format!("gs-{tag}-c{id}");
        // Interface names are limited to 15 bytes.
        let server_if = format!("vs{id}");
        let client_if = format!("vc{id}");
        let subnet = 4 * (n % 60 + 1);
        let server_ip = Ipv4Addr::new(10, 201, (std::process::id() % 250) as u8, subnet as u8 + 1);
        let client_ip = Ipv4Addr::new(10, 201, (std::process::id() % 250) as u8, subnet as u8 + 2);
        let pair = Pair {
            server_ns,
            client_ns,
            client_if: client_if.clone(),
            server_if: server_if.clone(),
            server_ip,
            client_ip,
        };
        run(&["ip", "netns", "add", &pair.server_ns]);
        run(&["ip", "netns", "add", &pair.client_ns]);
        run(&[
            "ip",
            "link",
            "add",
            &server_if,
            "netns",
            &pair.server_ns,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &pair.client_ns,
        ]);
        run(&[
            "ip",
            "-n",
            &pair.server_ns,
            "addr",
            "add",
            &format!("{server_ip}/30"),
            "dev",
            &server_if,
        ]);
        run(&[
            "ip",
            "-n",
            &pair.client_ns,
            "addr",
            "add",
            &format!("{client_ip}/30"),
            "dev",
            &client_if,
        ]);
        for (ns, dev) in [(&pair.server_ns, &server_if), (&pair.client_ns, &client_if)] {
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
        }
        pair
    }

    /// The words that run a program inside the server namespace: `ip netns exec NS`.
    pub fn server_prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.server_ns]
    }

    /// The words that run a program inside the client namespace.
    pub fn client_prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.client_ns]
    }

    /// A command that runs inside the server namespace.
    pub fn in_server(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.server_ns, program]);
        command
    }

    /// A command that runs inside the client namespace.
    pub fn in_client(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.client_ns, program]);
        command
    }

    /// Starts a game server in the server namespace, listening on the server's address on the
    /// link, with `config` layered over the defaults.
    pub async fn start_server(&self, config: &str) -> ServerProcess {
        ServerProcess::start(ServerSpec::in_namespace(
            &self.server_ns,
            self.server_ip,
            config,
        ))
        .await
    }

    /// Sets a sysctl inside the server namespace only.
    pub fn server_sysctl(&self, key_value: &str) {
        let words = self.server_prefix();
        run(&[&words[..], &["sysctl", "-q", "-w", key_value]].concat());
    }

    /// Pulls the cable: the client's link goes down.
    pub fn pull_cable(&self) {
        self.set_client_link("down");
    }

    /// Plugs the cable back in.
    pub fn plug_cable(&self) {
        self.set_client_link("up");
    }

    fn set_client_link(&self, state: &str) {
        run(&[
            "ip",
            "-n",
            &self.client_ns,
            "link",
            "set",
            &self.client_if,
            state,
        ]);
    }

    /// Pulls the cable by dropping every packet on the client's interface with nftables, leaving
    /// the link up (no EHOSTUNREACH shortcut: only timeouts can notice).
    pub fn drop_packets(&self) {
        self.drop_in_client("gs_cable", "", "");
    }

    /// Drops, in nftables table `table` of the client namespace, the packets that arrive on the
    /// client's interface and match `inbound`, and those that leave it and match `outbound` (""
    /// matches every packet).
    fn drop_in_client(&self, table: &str, inbound: &str, outbound: &str) {
        let rules = format!(
            "table inet {table} {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  iifname \"{0}\" {inbound} drop\n }}\n chain output {{\n  type filter hook output priority 0; policy accept;\n  oifname \"{0}\" {outbound} drop\n }}\n}}\n",
            self.client_if
        );
        nft(&self.client_prefix(), &rules);
    }

    /// Removes the nftables drop.
    pub fn stop_dropping(&self) {
        self.remove_table("gs_cable");
    }

    /// Drops, in nftables table `table`, the packets that reach the client's `port` (`inbound`)
    /// and those that leave it (`outbound`); [`Pair::remove_table`] ends it.
    pub fn drop_port(&self, table: &str, port: u16, inbound: bool, outbound: bool) {
        // A port no packet uses stands for "nothing" in the direction left alone.
        let to = if inbound { port } else { 0 };
        let from = if outbound { port } else { 0 };
        self.drop_in_client(
            table,
            &format!("tcp dport {to}"),
            &format!("tcp sport {from}"),
        );
    }

    /// Removes nftables table `table` of the client namespace.
    pub fn remove_table(&self, table: &str) {
        let words = self.client_prefix();
        run(&[&words[..], &["nft", "delete", "table", "inet", table]].concat());
    }
}

impl Pair {
    /// A handover: the client gets `new_ip` (on another network, as a phone moving from Wi-Fi
    /// to mobile data does) and loses its address on the link. Connections from the old address
    /// are dead from then on; new ones come from `new_ip` ([`connect_from_in`]).
    pub fn move_client_to(&self, new_ip: Ipv4Addr) {
        let (c, s) = (self.client_prefix(), self.server_prefix());
        let host = format!("{new_ip}/32");
        let server = format!("{}/32", self.server_ip);
        let new = new_ip.to_string();
        run(&[
            &c[..],
            &["ip", "addr", "add", &host, "dev", &self.client_if],
        ]
        .concat());
        run(&[
            &c[..],
            &[
                "ip",
                "route",
                "add",
                &server,
                "dev",
                &self.client_if,
                "src",
                &new,
            ],
        ]
        .concat());
        run(&[
            &s[..],
            &["ip", "route", "add", &host, "dev", &self.server_if],
        ]
        .concat());
        let old = format!("{}/30", self.client_ip);
        run(&[&c[..], &["ip", "addr", "del", &old, "dev", &self.client_if]].concat());
    }

    /// A middlebox that forgets the connection from the client's port `client_port` and answers
    /// what still comes for it with a reset, to each side: from now on every packet of that
    /// connection is dropped before it reaches its socket and a reset goes back to its sender
    /// (nftables `reject with tcp reset` in both namespaces). New connections pass.
    pub fn forget_connection(&self, client_port: u16) {
        reject_in(
            &self.server_prefix(),
            &format!("iifname \"{}\" tcp sport {client_port}", self.server_if),
        );
        reject_in(
            &self.client_prefix(),
            &format!("iifname \"{}\" tcp dport {client_port}", self.client_if),
        );
    }

    /// A lossy link: `percent` of the packets dropped in each direction, at random (nftables
    /// `numgen random` on the client's interface).
    pub fn lose(&self, percent: u32) {
        self.lose_each_way(percent * 10, percent * 10);
    }

    /// A lossy link with a rate per direction: `up` per thousand of the packets from the client
    /// dropped, `down` per thousand of those to it.
    pub fn lose_each_way(&self, up: u32, down: u32) {
        self.lose_on_port(None, up, down);
    }

    /// [`Pair::lose_each_way`] for the connections to the server's `port` only (every
    /// connection when `None`).
    pub fn lose_on_port(&self, port: Option<u16>, up: u32, down: u32) {
        let (from, to) = match port {
            Some(port) => (format!("tcp sport {port} "), format!("tcp dport {port} ")),
            None => (String::new(), String::new()),
        };
        let random = |per_mille: u32| format!("numgen random mod 1000 < {per_mille}");
        self.drop_in_client(
            "gs_loss",
            &format!("{from}{}", random(down)),
            &format!("{to}{}", random(up)),
        );
    }

    /// Cuts the links of the client connections from `ports` only: every packet of theirs
    /// dropped in both directions (nftables on the client's interface), the other connections
    /// untouched.
    pub fn cut_ports(&self, ports: &[u16]) {
        let set = ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        self.drop_in_client(
            "gs_cut",
            &format!("tcp dport {{ {set} }}"),
            &format!("tcp sport {{ {set} }}"),
        );
    }
}

/// Answers the packets `matching` that arrive in the namespace of `words` with a reset; the
/// resets themselves (the other side's answers) pass, as a middlebox's own resets reach the
/// endpoints.
fn reject_in(words: &[&str; 4], matching: &str) {
    let rules = format!(
        "table inet gs_nat {{\n chain input {{\n  type filter hook input priority 0; policy accept;\n  {matching} tcp flags & rst == 0 reject with tcp reset\n }}\n}}\n"
    );
    nft(words, &rules);
}

/// Connects to `addr` from inside network namespace `ns` and returns the connected socket.
///
/// A short-lived thread enters the namespace (setns affects only the calling thread) and creates
/// the socket there; a socket keeps the namespace it was created in, so the test's runtime can
/// then drive it from any thread.
pub fn connect_in(ns: &str, addr: std::net::SocketAddr) -> std::net::TcpStream {
    connect_in_from(ns, None, addr)
}

/// [`connect_in`] from address `source` of the namespace.
pub fn connect_from_in(
    ns: &str,
    source: Ipv4Addr,
    addr: std::net::SocketAddr,
) -> std::net::TcpStream {
    connect_in_from(ns, Some(source), addr)
}

fn connect_in_from(
    ns: &str,
    source: Option<Ipv4Addr>,
    addr: std::net::SocketAddr,
) -> std::net::TcpStream {
    let path = format!("/var/run/netns/{ns}");
    let stream = std::thread::spawn(move || -> std::io::Result<std::net::TcpStream> {
        let namespace = std::fs::File::open(&path).expect("open the namespace");
        nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        if let Some(source) = source {
            socket.bind(&std::net::SocketAddr::from((source, 0)).into())?;
        }
        socket.connect_timeout(&addr.into(), std::time::Duration::from_secs(10))?;
        Ok(socket.into())
    })
    .join()
    .expect("connect thread")
    .unwrap_or_else(|error| panic!("connect to {addr} from inside {ns}: {error}"));
    stream.set_nonblocking(true).expect("non-blocking");
    stream
}

/// A listening socket bound to `addr` inside network namespace `ns` (as [`connect_in`] makes its
/// socket there), non-blocking.
pub fn listen_in(ns: &str, addr: std::net::SocketAddr) -> std::net::TcpListener {
    let path = format!("/var/run/netns/{ns}");
    let listener = std::thread::spawn(move || -> std::io::Result<std::net::TcpListener> {
        let namespace = std::fs::File::open(&path).expect("open the namespace");
        nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        std::net::TcpListener::bind(addr)
    })
    .join()
    .expect("listen thread")
    .unwrap_or_else(|error| panic!("listen on {addr} inside {ns}: {error}"));
    listener.set_nonblocking(true).expect("non-blocking");
    listener
}

impl Drop for Pair {
    fn drop(&mut self) {
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
