//! `game-server`: the demo game "rooms" served by the engine, like any other game.

/// Sessions, rooms and the reaper run on different worker threads, so memory is often freed by
/// another thread than the one that allocated it (an event leaves a room's task and is freed in
/// a session's). jemalloc frees such memory without the lock the system allocator takes, and
/// gives memory back after a burst.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    // Purge freed pages from a background thread, so that memory goes back to the system after a
    // burst even when the server then sits idle (without it, purging waits for the next
    // allocation).
    if let Err(error) = tikv_jemalloc_ctl::background_thread::write(true) {
        eprintln!("game-server: jemalloc background purging unavailable: {error}");
    }
    game_engine::App::new(rooms::Rooms::new)
        .page("/play", rooms::PLAY_PAGE)
        .run()
}
