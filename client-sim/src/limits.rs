//! The file-descriptor limit: raised at start, and checked against `--clients`.
//!
//! Every connection is one descriptor (a crash instance's pipe to its child stands in for its
//! socket), so a run of N clients needs N descriptors plus a few for the runtime, the HTTP client
//! and stdio. The hard limit on the project's machines is 20,000 and cannot be raised, not even
//! by root: one process holds about 19,900 clients, and more need more processes.

/// Descriptors kept aside for everything that is not a client connection.
pub const RESERVED_FDS: u64 = 100;

/// The descriptor limits after raising the soft one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FdLimit {
    /// The soft limit now in force.
    pub soft: u64,
    /// The hard limit (the ceiling of the soft one).
    pub hard: u64,
}

impl FdLimit {
    /// How many clients fit.
    pub fn client_capacity(&self) -> u64 {
        self.soft.saturating_sub(RESERVED_FDS)
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns both.
pub fn raise_nofile() -> std::io::Result<FdLimit> {
    // Raises the soft limit to the hard one (bounded by the kernel's per-process maximum where
    // the platform has one) and leaves the hard limit alone.
    rlimit::increase_nofile_limit(u64::MAX)?;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok(FdLimit { soft, hard })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn raising_leaves_soft_equal_to_hard() {
        let limit = raise_nofile().unwrap();
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(
            FdLimit {
                soft: 20_000,
                hard: 20_000
            }
            .client_capacity(),
            20_000 - RESERVED_FDS
        );
    }
}
