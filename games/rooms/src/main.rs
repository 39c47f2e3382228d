//! `game-server`: the demo game "rooms" served by the engine, like any other game.

/// Sessions, rooms and the reaper run on different worker threads, so memory is often freed by
/// another thread than the one that allocated it (an event leaves a room's task and is freed in
/// a session's). mimalloc frees such memory without the lock the system allocator takes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    game_engine::App::new(rooms::Rooms::new).run()
}
