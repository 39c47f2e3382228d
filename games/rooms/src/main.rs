//! `game-server`: the demo game "rooms" served by the engine, like any other game.

fn main() -> std::process::ExitCode {
    game_engine::App::new(rooms::Rooms::new).run()
}
