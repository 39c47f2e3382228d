//! The non-Kubernetes path for real: three game-server processes behind Debian's HAProxy in TCP
//! mode, `send-proxy-v2` to each, health-checked on `/readyz` of each admin port.
//!
//! - the servers see the clients' own addresses (clients bound to 127.0.0.x), so the per-source
//!   cap holds per client, not per balancer;
//! - a drained instance's players receive every event they were owed, then
//!   `Bye{server_shutdown}`; HAProxy takes the instance out and new connections land on the
//!   others, where they play;
//! - a killed instance's players come back through HAProxy with their resume token, land on
//!   another instance, and are refused with `resume_rejected` (unknown token), counted by reason.

use std::net::{IpAddr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use protocol::{ByeCode, ClientMessage, Hello, PROTOCOL_VERSION, Resume, ServerMessage};
use system_tests::process::{ScratchDir, ServerProcess, ServerSpec};
use system_tests::{RawClient, hello_in, need_tools, relay};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

/// The game servers' configuration: PROXY headers from HAProxy on loopback, per-source limits
/// for every address (loopback is exempt by default; here the clients are 127.0.0.x too).
const SERVER_CONFIG: &str = "[server]\nmax_sessions_per_source = 2\nsource_exempt = []\n\
                             [net.proxy_protocol]\ntrusted = [\"127.0.0.1/32\"]\n\
                             [shutdown]\ndrain_timeout = \"5s\"\n";

struct Balancer {
    addr: SocketAddr,
    child: Child,
    _dir: ScratchDir,
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// HAProxy in front of `servers` (the port `port_of` each names): the same client address always
/// to the same live instance (`balance source`), an instance taken out after one failed
/// `/readyz` check.
async fn balancer(
    servers: &[&ServerProcess],
    port_of: impl Fn(&ServerProcess) -> SocketAddr,
) -> Balancer {
    let dir = ScratchDir::new("haproxy");
    let port = free_port();
    let mut config = format!(
        "global\n    maxconn 2000\n\
         defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 60s\n    \
         timeout server 60s\n    timeout check 1s\n\
         frontend game\n    bind 127.0.0.1:{port}\n    default_backend instances\n\
         backend instances\n    balance source\n    hash-type consistent\n    \
         option redispatch\n    retries 3\n    option httpchk\n    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost\n    \
         http-check expect status 200\n"
    );
    for (i, server) in servers.iter().enumerate() {
        config.push_str(&format!(
            "    server s{i} {} send-proxy-v2 check port {} inter 200ms fall 1 rise 2\n",
            port_of(server),
            server.admin.port()
        ));
    }
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).expect("write haproxy.cfg");
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start haproxy");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Up once it accepts.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "haproxy did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let the first health checks mark every instance up.
    tokio::time::sleep(Duration::from_millis(800)).await;
    Balancer {
        addr,
        child,
        _dir: dir,
    }
}

/// Connects to the balancer from `source`.
async fn connect_from(source: IpAddr, to: SocketAddr) -> RawClient {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(source, 0))
        .expect("bind the source address");
    RawClient::over(socket.connect(to).await.expect("connect to haproxy"))
}

fn source(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Which of `servers` holds `player` now, by its `/sessions`; also returns the peer it shows.
async fn holder(servers: &[&ServerProcess], player: &str) -> Option<(usize, String)> {
    for (i, server) in servers.iter().enumerate() {
        let (status, body) = server.http("GET", "/sessions?limit=1000").await;
        if status != 200 {
            continue;
        }
        let page: serde_json::Value = serde_json::from_str(&body).expect("sessions JSON");
        let found = page["sessions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["player"] == player);
        if let Some(session) = found {
            return Some((i, session["peer"].as_str().unwrap_or_default().to_owned()));
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (apt-get install haproxy)")]
async fn three_instances_behind_haproxy_see_clients_drain_and_refuse_resumes_of_the_dead() {
    need_tools(&["haproxy"], "apt-get install haproxy");
    let spec = || ServerSpec::loopback(SERVER_CONFIG);
    let a = ServerProcess::start(spec()).await;
    let b = ServerProcess::start(spec()).await;
    let c = ServerProcess::start(spec()).await;
    let lb = balancer(&[&a, &b, &c], |server| server.addr).await;

    // 1. Clients' own addresses: /sessions shows 127.0.0.x, and the cap of 2 sessions per
    // source holds for one client address (the same address always reaches the same instance).
    let mut players = Vec::new();
    for n in 0..2 {
        let mut p = connect_from(source(21), lb.addr).await;
        let id = format!("capped-{n}");
        p.hello(hello_in(&id, &format!("room-{id}"))).await;
        players.push((id, p));
    }
    let mut third = connect_from(source(21), lb.addr).await;
    third.send(hello_in("capped-2", "room-capped-2")).await;
    match third.recv().await {
        Some(Ok(ServerMessage::Bye(bye))) => assert_eq!(bye.code, ByeCode::ServerFull, "{bye:?}"),
        other => panic!("a third session from one client address: {other:?}"),
    }
    let servers = [&a, &b, &c];
    let (_, peer) = holder(&servers, "capped-0")
        .await
        .expect("capped-0 is on an instance");
    assert!(
        peer.starts_with("127.0.0.21:"),
        "the instance sees the client's address, not HAProxy's: {peer}"
    );
    drop(players);

    // 2. Drain one instance under its players: everything they were owed, then the Bye.
    let mut on = Vec::new();
    for last in 30..42u8 {
        let mut p = connect_from(source(last), lb.addr).await;
        let id = format!("drained-{last}");
        let welcome = p.hello(hello_in(&id, &format!("room-{id}"))).await;
        let (at, _) = holder(&servers, &id).await.expect("placed");
        on.push((at, id, p, welcome));
    }
    let target = on[0].0;
    for (_, _, p, _) in on.iter_mut().filter(|(at, ..)| *at == target) {
        for seq in 1..=20 {
            p.send(ClientMessage::Input {
                seq,
                payload: Bytes::from_static(b"owed"),
            })
            .await;
        }
    }
    // The inputs cross HAProxy and are applied; their relays are owed when the drain starts.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    servers[target].signal("TERM");
    let mut drained = 0;
    for (at, id, p, _) in on.iter_mut() {
        if *at != target {
            continue;
        }
        let (before, bye) = p.until_bye().await;
        assert_eq!(bye.code, ByeCode::ServerShutdown, "{id}: {bye:?}");
        let acked = before
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Ack { seq } => Some(*seq),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        assert_eq!(
            acked, 20,
            "{id}: every input applied and acknowledged before the Bye"
        );
        let relayed: Vec<u64> = before
            .iter()
            .filter_map(relay)
            .filter(|(from, _)| from == id)
            .map(|(_, seq)| seq)
            .collect();
        assert_eq!(
            relayed,
            (1..=acked).collect::<Vec<u64>>(),
            "{id}: the relay of every applied input arrives, in order, before the Bye"
        );
        drained += 1;
    }
    assert!(drained >= 1);
    // HAProxy notices the instance is not ready and sends newcomers elsewhere.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let alive: Vec<&ServerProcess> = servers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != target)
        .map(|(_, s)| *s)
        .collect();
    for last in 50..56u8 {
        let mut p = connect_from(source(last), lb.addr).await;
        let id = format!("after-drain-{last}");
        p.hello(hello_in(&id, &format!("room-{id}"))).await;
        let (at, _) = holder(&alive, &id).await.expect("on a live instance");
        assert!(at < alive.len());
    }

    // 3. Kill an instance that holds players: their resumes land on the survivor and are
    // refused as unknown there.
    let (killed, survivor) = (alive[0], alive[1]);
    let mut victims = Vec::new();
    for last in 60..90u8 {
        let mut p = connect_from(source(last), lb.addr).await;
        let id = format!("victim-{last}");
        let welcome = p.hello(hello_in(&id, &format!("room-{id}"))).await;
        if holder(&[killed], &id).await.is_some() {
            victims.push((last, id, welcome));
        }
        if victims.len() == 3 {
            break;
        }
    }
    assert!(
        !victims.is_empty(),
        "no player landed on the instance to kill"
    );
    let before = survivor.scrape().await;
    killed.signal("KILL");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for (last, id, welcome) in &victims {
        let mut back = connect_from(source(*last), lb.addr).await;
        back.send(ClientMessage::Hello(Box::new(Hello {
            version: PROTOCOL_VERSION,
            player_id: id.clone(),
            room: format!("room-{id}"),
            auth_token: None,
            resume: Some(Resume {
                token: welcome.resume_token,
                last_event_seq: 0,
            }),
            options: Default::default(),
        })))
        .await;
        match back.recv().await {
            Some(Ok(ServerMessage::Bye(bye))) => {
                assert_eq!(bye.code, ByeCode::ResumeRejected, "{id}: {bye:?}");
            }
            other => panic!("{id}: a resume of a dead instance's session: {other:?}"),
        }
    }
    let after = survivor.scrape().await;
    let refused = after.get("gameserver_resume_rejected_total", &[("reason", "unknown")])
        - before.get("gameserver_resume_rejected_total", &[("reason", "unknown")]);
    assert_eq!(refused, victims.len() as f64, "refusals counted as unknown");
}

/// Browser players behind the same HAProxy: TCP mode, `send-proxy-v2` to the servers' WebSocket
/// listeners, TLS passed through to the servers (wss). Each server reads the header before the
/// TLS handshake and the upgrade: it sees every client at its own address, and the per-source
/// cap holds per client; a third connection from one address is turned away in its TLS
/// handshake (no `Bye` can travel before it) and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(has_haproxy), ignore = "needs haproxy (apt-get install haproxy)")]
async fn wss_players_behind_haproxy_are_seen_at_their_own_addresses() {
    need_tools(&["haproxy"], "apt-get install haproxy");
    let cert = system_tests::tls::TestCert::new("haproxy-wss");
    let config = format!(
        "{}{}",
        SERVER_CONFIG.replace(
            "[server]\n",
            "[server]\nwebsocket_listen = \"127.0.0.1:0\"\n"
        ),
        cert.config()
    );
    let a = ServerProcess::loopback(&config).await;
    let b = ServerProcess::loopback(&config).await;
    let lb = balancer(&[&a, &b], |server| {
        server.websocket.expect("the WebSocket listener")
    })
    .await;
    let before = [a.scrape().await, b.scrape().await];
    // A wss client from `source`: TCP to HAProxy, TLS with the servers' certificate, the
    // upgrade; `None` when the connection is closed before it is open.
    let open = |last: u8| {
        let (pem, lb) = (cert.pem.clone(), lb.addr);
        async move {
            let socket = TcpSocket::new_v4().expect("socket");
            socket
                .bind(SocketAddr::new(source(last), 0))
                .expect("bind the source address");
            let stream = socket.connect(lb).await.expect("connect to haproxy");
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from("localhost")
                .expect("a server name");
            let tls = system_tests::tls::connector(&pem)
                .connect(name, stream)
                .await
                .ok()?;
            let (ws, _) = tokio_tungstenite::client_async("wss://localhost/", tls)
                .await
                .ok()?;
            Some(ws)
        }
    };
    let mut players = Vec::new();
    for n in 0..2 {
        let mut ws = open(51).await.expect("a wss connection through haproxy");
        let id = format!("wss-{n}");
        system_tests::ws_hello(&mut ws, hello_in(&id, &format!("room-{id}"))).await;
        players.push(ws);
    }
    let servers = [&a, &b];
    let (at, peer) = holder(&servers, "wss-0")
        .await
        .expect("wss-0 is on an instance");
    assert!(
        peer.starts_with("127.0.0.51:"),
        "the instance sees the client's address, not HAProxy's: {peer}"
    );
    // The third from the same address reaches the same instance (balance source), which turns
    // it away before its TLS handshake completes.
    let third = open(51).await;
    assert!(
        third.is_none(),
        "a third wss session from one client address"
    );
    let after = servers[at].scrape().await;
    let rejected = |scrape: &system_tests::Scrape| {
        scrape.get(
            "gameserver_connections_rejected_total",
            &[("reason", "per_source_limit")],
        )
    };
    assert_eq!(rejected(&after) - rejected(&before[at]), 1.0);
    assert_eq!(after.accepted_since(&before[at], "wss"), 2.0);
    // Another client address still gets in.
    let mut other = open(52).await.expect("another client address");
    system_tests::ws_hello(&mut other, hello_in("wss-other", "room-wss-other")).await;
    drop(players);
}
