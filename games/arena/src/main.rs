//! `arena`: the authoritative arena example served by the engine.

fn main() -> std::process::ExitCode {
    game_engine::App::new(arena::Arena::new).run()
}
