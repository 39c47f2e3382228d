//! Running out of file descriptors: the real `game-server` binary under a low HARD limit
//! (`prlimit --nofile=N:N`, so it cannot raise the soft limit past it). Once every descriptor is
//! in use, accept(2) fails with EMFILE while connections wait in the listen queue. The server
//! must count the errors, back off instead of retrying in a hot loop, keep its other sessions
//! and its admin port working, and accept again as soon as descriptors are free.

use std::time::{Duration, Instant};

use system_tests::process::{AdminConnection, ServerProcess, ServerSpec, message};
use system_tests::{PATIENCE, RawClient, Scrape, need_tools};

const LIMIT: u64 = 64;

fn emfile_errors(scrape: &Scrape) -> f64 {
    scrape.get("gameserver_accept_errors_total", &[("kind", "emfile")])
}

#[tokio::test]
#[cfg_attr(not(has_prlimit), ignore = "needs prlimit (util-linux)")]
async fn out_of_descriptors_the_acceptor_backs_off_counts_emfile_and_accepts_again() {
    need_tools(&["prlimit"], "util-linux");
    let limit = format!("--nofile={LIMIT}:{LIMIT}");
    let server = ServerProcess::start(
        // Connections that never say Hello stay open for the whole test.
        ServerSpec::loopback("[session]\nhandshake_timeout = \"60s\"\n")
            .wrapped(&["prlimit", &limit]),
    )
    .await;
    // Opened before the descriptors run out; new admin connections would wait in the queue too.
    let mut admin = AdminConnection::connect(server.admin).await;
    let idle = admin.scrape().await;
    assert_eq!(
        idle.get("process_max_fds", &[]),
        LIMIT as f64,
        "the server runs under the hard limit"
    );
    let in_use = idle.get("process_open_fds", &[]) as u64;
    assert!(in_use < LIMIT, "{in_use} descriptors in use at start");
    let mark = server.log_mark();

    // Every free descriptor, and 20 more connections that can only wait in the listen queue.
    let mut clients = Vec::new();
    for _ in 0..(LIMIT - in_use + 20) {
        clients.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("the kernel completes the handshake even when accept cannot"),
        );
    }
    let deadline = Instant::now() + PATIENCE;
    let mut scrape = admin.scrape().await;
    while emfile_errors(&scrape) == 0.0 {
        assert!(
            Instant::now() < deadline,
            "no EMFILE counted:\n{}",
            scrape.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        scrape = admin.scrape().await;
    }
    // A session counts itself active when its task first runs, which on a loaded machine can be
    // after the acceptor has already met EMFILE: wait for the count, not the first scrape.
    while scrape.get("gameserver_sessions_active", &[]) == 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        scrape = admin.scrape().await;
    }
    let accepted = scrape.get("gameserver_sessions_active", &[]);
    assert!(accepted > 0.0, "sessions up to the limit were admitted");

    // While saturated: over one second, a handful of retries and almost no CPU.
    let errors_before = emfile_errors(&scrape);
    let cpu_before = server.cpu_time();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = server.cpu_time() - cpu_before;
    let elapsed = window.elapsed();
    let scrape = admin.scrape().await;
    let retries = emfile_errors(&scrape) - errors_before;
    eprintln!(
        "measured: EMFILE: {accepted} sessions admitted under {LIMIT} descriptors, \
         {retries} failed accepts and {cpu:?} CPU in {elapsed:?}"
    );
    assert!(
        cpu < elapsed / 4,
        "the server spun while out of descriptors: {cpu:?} CPU in {elapsed:?}"
    );
    assert!(
        (1.0..=20.0).contains(&retries),
        "backoff retries about twice a second at most: {retries} failed accepts in {elapsed:?}"
    );
    assert!(
        scrape.close_deltas(&idle).is_empty()
            && scrape.get("gameserver_sessions_active", &[]) >= accepted,
        "no session was lost: {:?}",
        scrape.close_deltas(&idle)
    );
    // Logged once per burst: one warning, and at most one recovery line even if a descriptor the
    // runtime held briefly came free in between (a burst lasts until accepts stay quiet).
    let logged = |what: &str| {
        server.logs.all()[mark..]
            .iter()
            .filter(|l| message(l).is_some_and(|m| m.starts_with(what)))
            .count()
    };
    assert_eq!(
        logged("accept failing"),
        1,
        "a burst of failed accepts is logged once"
    );
    assert!(
        logged("accepting again") <= 1,
        "a recovery is logged once per burst"
    );

    // Free the descriptors: the queued connections are accepted (and end at once), and a new
    // player gets in.
    drop(clients);
    let (mut player, welcome) = RawClient::join(server.addr, "after-emfile").await;
    assert!(welcome.session_id > 0);
    player
        .send(protocol::ClientMessage::Ping { nonce: 3 })
        .await;
    loop {
        match player.recv().await {
            Some(Ok(protocol::ServerMessage::Pong { nonce: 3 })) => break,
            Some(Ok(_)) => {}
            other => panic!("the new session failed: {other:?}"),
        }
    }
    server
        .logs
        .wait_from(mark, PATIENCE, "`accepting again` log line", |l| {
            message(l).as_deref() == Some("accepting again")
        })
        .await;
}
