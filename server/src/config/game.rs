//! The section a game adds to the configuration.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Problem;

/// A game's configuration section. `()` is a game with no settings.
pub trait GameConfig: DeserializeOwned + Serialize + Clone + Send + Sync + 'static {
    /// The section's defaults, as commented TOML starting with `[game]`. They are merged into
    /// the engine's embedded defaults, so that `--print-config` shows them and a key not listed
    /// here is reported as unknown.
    const DEFAULT_TOML: &'static str;

    /// Checks the values; each problem names its key as `game.key`.
    fn validate(&self) -> Vec<Problem> {
        Vec::new()
    }
}

impl GameConfig for () {
    const DEFAULT_TOML: &'static str = "";
}
