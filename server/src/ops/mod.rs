//! Operations: metrics, the reaper that records every close, the close log, the admin port,
//! the memory sampler, and Agones.

pub(crate) mod admin;
#[cfg(feature = "agones")]
pub(crate) mod agones;
pub(crate) mod close_log;
pub(crate) mod metrics;
pub(crate) mod reaper;
pub(crate) mod sampler;
pub(crate) mod status;
