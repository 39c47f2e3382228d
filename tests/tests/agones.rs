//! The game server under Agones, against a fake Agones SDK server: a gRPC server generated from
//! the `agones` crate's own protos (tests/build.rs) that records every call, keeps the
//! GameServer's counters the way the real sidecar does (declared counters only, count within
//! capacity), and can move the GameServer to `Shutdown` as Agones does when a fleet shrinks.
//! The real SDK server needs a Kubernetes cluster.

// tonic::Status is the error type the generated service traits require.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use protocol::ByeCode;
use system_tests::process::{ServerProcess, ServerSpec};
use system_tests::{RawClient, hello_in};
use tokio::time::Instant;
use tokio_stream::StreamExt as _;
use tonic::{Request, Response, Status, Streaming};

#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code
)]
mod agones {
    pub mod dev {
        pub mod sdk {
            tonic::include_proto!("agones.dev.sdk");
            pub mod beta {
                tonic::include_proto!("agones.dev.sdk.beta");
            }
        }
    }
}
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code
)]
mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}
#[allow(
    clippy::all,
    clippy::pedantic,
    missing_docs,
    unreachable_pub,
    dead_code
)]
mod grpc {
    pub mod gateway {
        pub mod protoc_gen_openapiv2 {
            pub mod options {
                tonic::include_proto!("grpc.gateway.protoc_gen_openapiv2.options");
            }
        }
    }
}

use agones::dev::sdk::{self as api, beta};

/// What the fake saw, in order, with when.
#[derive(Debug, Default)]
struct Record {
    calls: Vec<(Instant, String)>,
    /// Declared counters: (count, capacity).
    counters: HashMap<String, (i64, i64)>,
}

#[derive(Clone)]
struct Fake {
    record: Arc<Mutex<Record>>,
    state: tokio::sync::watch::Sender<String>,
}

impl Fake {
    fn note(&self, call: String) {
        self.lock().calls.push((Instant::now(), call));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn calls(&self) -> Vec<String> {
        self.lock().calls.iter().map(|(_, c)| c.clone()).collect()
    }

    fn first(&self, call: &str) -> Option<(usize, Instant)> {
        self.lock()
            .calls
            .iter()
            .enumerate()
            .find(|(_, (_, c))| c == call)
            .map(|(i, (at, _))| (i, *at))
    }

    fn count(&self, counter: &str) -> Option<(i64, i64)> {
        self.lock().counters.get(counter).copied()
    }

    fn game_server(state: &str) -> api::GameServer {
        api::GameServer {
            status: Some(api::game_server::Status {
                state: state.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Serves on a free loopback port and returns the fake with the port.
    async fn start() -> (Fake, u16) {
        let record = Record {
            counters: [("players", (0, 1000)), ("rooms", (0, 1000))]
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            ..Record::default()
        };
        let (state, _) = tokio::sync::watch::channel("Scheduled".to_owned());
        let fake = Fake {
            record: Arc::new(Mutex::new(record)),
            state,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake SDK server");
        let port = listener.local_addr().expect("address").port();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let router = tonic::transport::Server::builder()
            .add_service(api::sdk_server::SdkServer::new(fake.clone()))
            .add_service(beta::sdk_server::SdkServer::new(fake.clone()));
        tokio::spawn(router.serve_with_incoming(incoming));
        (fake, port)
    }
}

#[tonic::async_trait]
impl api::sdk_server::Sdk for Fake {
    async fn ready(&self, _: Request<api::Empty>) -> Result<Response<api::Empty>, Status> {
        self.note("Ready".to_owned());
        self.state.send_replace("Ready".to_owned());
        Ok(Response::new(api::Empty {}))
    }

    async fn allocate(&self, _: Request<api::Empty>) -> Result<Response<api::Empty>, Status> {
        self.note("Allocate".to_owned());
        Ok(Response::new(api::Empty {}))
    }

    async fn shutdown(&self, _: Request<api::Empty>) -> Result<Response<api::Empty>, Status> {
        self.note("Shutdown".to_owned());
        self.state.send_replace("Shutdown".to_owned());
        Ok(Response::new(api::Empty {}))
    }

    async fn health(
        &self,
        request: Request<Streaming<api::Empty>>,
    ) -> Result<Response<api::Empty>, Status> {
        let mut pings = request.into_inner();
        while let Some(Ok(_)) = pings.next().await {
            self.note("Health".to_owned());
        }
        Ok(Response::new(api::Empty {}))
    }

    async fn get_game_server(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<api::GameServer>, Status> {
        Ok(Response::new(Fake::game_server(&self.state.borrow())))
    }

    type WatchGameServerStream = std::pin::Pin<
        Box<dyn tokio_stream::Stream<Item = Result<api::GameServer, Status>> + Send + 'static>,
    >;

    async fn watch_game_server(
        &self,
        _: Request<api::Empty>,
    ) -> Result<Response<Self::WatchGameServerStream>, Status> {
        let states = tokio_stream::wrappers::WatchStream::new(self.state.subscribe());
        Ok(Response::new(Box::pin(
            states.map(|state: String| Ok(Fake::game_server(&state))),
        )))
    }

    async fn set_label(
        &self,
        request: Request<api::KeyValue>,
    ) -> Result<Response<api::Empty>, Status> {
        let kv = request.into_inner();
        self.note(format!("SetLabel {}={}", kv.key, kv.value));
        Ok(Response::new(api::Empty {}))
    }

    async fn set_annotation(
        &self,
        request: Request<api::KeyValue>,
    ) -> Result<Response<api::Empty>, Status> {
        let kv = request.into_inner();
        self.note(format!("SetAnnotation {}={}", kv.key, kv.value));
        Ok(Response::new(api::Empty {}))
    }

    async fn reserve(&self, _: Request<api::Duration>) -> Result<Response<api::Empty>, Status> {
        self.note("Reserve".to_owned());
        Ok(Response::new(api::Empty {}))
    }
}

#[tonic::async_trait]
impl beta::sdk_server::Sdk for Fake {
    async fn get_counter(
        &self,
        request: Request<beta::GetCounterRequest>,
    ) -> Result<Response<beta::Counter>, Status> {
        let name = request.into_inner().name;
        let (count, capacity) = self
            .count(&name)
            .ok_or_else(|| Status::not_found(format!("counter {name} not declared")))?;
        Ok(Response::new(beta::Counter {
            name,
            count,
            capacity,
        }))
    }

    async fn update_counter(
        &self,
        request: Request<beta::UpdateCounterRequest>,
    ) -> Result<Response<beta::Counter>, Status> {
        let update = request
            .into_inner()
            .counter_update_request
            .ok_or_else(|| Status::invalid_argument("no update"))?;
        let mut record = self.lock();
        let (count, capacity) =
            record.counters.get(&update.name).copied().ok_or_else(|| {
                Status::not_found(format!("counter {} not declared", update.name))
            })?;
        let capacity = update.capacity.unwrap_or(capacity);
        let count = update.count.unwrap_or(count) + update.count_diff;
        if count < 0 || (capacity > 0 && count > capacity) {
            return Err(Status::out_of_range(format!(
                "count {count} outside [0, {capacity}]"
            )));
        }
        record
            .counters
            .insert(update.name.clone(), (count, capacity));
        record
            .calls
            .push((Instant::now(), format!("UpdateCounter {}", update.name)));
        Ok(Response::new(beta::Counter {
            name: update.name,
            count,
            capacity,
        }))
    }

    async fn get_list(
        &self,
        _: Request<beta::GetListRequest>,
    ) -> Result<Response<beta::List>, Status> {
        Err(Status::not_found("no lists declared"))
    }

    async fn update_list(
        &self,
        _: Request<beta::UpdateListRequest>,
    ) -> Result<Response<beta::List>, Status> {
        Err(Status::not_found("no lists declared"))
    }

    async fn add_list_value(
        &self,
        _: Request<beta::AddListValueRequest>,
    ) -> Result<Response<beta::List>, Status> {
        Err(Status::not_found("no lists declared"))
    }

    async fn remove_list_value(
        &self,
        _: Request<beta::RemoveListValueRequest>,
    ) -> Result<Response<beta::List>, Status> {
        Err(Status::not_found("no lists declared"))
    }
}

async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn server_under(port: u16) -> ServerProcess {
    ServerProcess::start(
        ServerSpec::loopback(
            "[server]\nmax_sessions = 500\n[rooms]\nmax_rooms = 50\n\
             [agones]\nenabled = true\nhealth_interval = \"200ms\"\n",
        )
        .with_env("AGONES_SDK_GRPC_PORT", &port.to_string()),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_health_counters_drain_label_and_shutdown_come_in_order() {
    let (fake, port) = Fake::start().await;
    let mut server = server_under(port).await;

    eventually("Ready", || fake.first("Ready").is_some()).await;
    eventually("three health pings", || {
        fake.calls().iter().filter(|c| *c == "Health").count() >= 3
    })
    .await;
    let (ready, _) = fake.first("Ready").expect("Ready");
    let (health, _) = fake.first("Health").expect("Health");
    assert!(
        ready < health,
        "Ready before any Health: {:?}",
        fake.calls()
    );
    // The capacities come from server.max_sessions and rooms.max_rooms.
    eventually("capacities", || {
        fake.count("players").map(|c| c.1) == Some(500)
            && fake.count("rooms").map(|c| c.1) == Some(50)
    })
    .await;

    // The counters follow players and rooms.
    let (mut stays, _) = {
        let mut client = RawClient::connect(server.addr).await;
        let welcome = client.hello(hello_in("stays", "room-1")).await;
        (client, welcome)
    };
    let mut leaves = RawClient::connect(server.addr).await;
    leaves.hello(hello_in("leaves", "room-2")).await;
    eventually("2 players in 2 rooms", || {
        fake.count("players").map(|c| c.0) == Some(2) && fake.count("rooms").map(|c| c.0) == Some(2)
    })
    .await;
    // A graceful quit: the player leaves its room, which closes (a broken connection would be
    // parked for resume and keep its room).
    leaves
        .send(protocol::ClientMessage::Bye(protocol::Bye::new(
            ByeCode::ClientQuit,
            "",
        )))
        .await;
    leaves.until_bye().await;
    eventually("1 player in 1 room", || {
        fake.count("players").map(|c| c.0) == Some(1) && fake.count("rooms").map(|c| c.0) == Some(1)
    })
    .await;

    // SIGTERM: labelled draining, the player gets its Bye and the close, then Shutdown().
    server.signal("TERM");
    let (_, bye) = stays.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerShutdown);
    assert!(
        stays.until_end().await.is_none(),
        "a clean close after the Bye"
    );
    let closed_at = Instant::now();
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    let calls = fake.calls();
    let label = calls
        .iter()
        .position(|c| c == "SetLabel draining=true")
        .unwrap_or_else(|| panic!("no draining label: {calls:?}"));
    let (shutdown, shutdown_at) = fake.first("Shutdown").expect("Shutdown() after the drain");
    assert!(label < shutdown, "{calls:?}");
    assert!(
        shutdown_at >= closed_at,
        "Shutdown() came before the last session had closed: {calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| *c == "Shutdown").count(),
        1,
        "{calls:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agones_moving_the_game_server_to_shutdown_drains_it() {
    let (fake, port) = Fake::start().await;
    let mut server = server_under(port).await;
    eventually("Ready", || fake.first("Ready").is_some()).await;
    let mut player = RawClient::connect(server.addr).await;
    player.hello(hello_in("drained-by-agones", "room-x")).await;
    // As when a fleet scales down: the GameServer is marked for shutdown.
    fake.state.send_replace("Shutdown".to_owned());
    let (_, bye) = player.until_bye().await;
    assert_eq!(bye.code, ByeCode::ServerShutdown);
    let status = server.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "{status:?}");
    assert!(
        fake.calls().iter().any(|c| c == "Shutdown"),
        "{:?}",
        fake.calls()
    );
}
