//! `tag`: the game of tag served by the engine.

fn main() -> std::process::ExitCode {
    game_engine::App::new(tag::Tag::new).run()
}
