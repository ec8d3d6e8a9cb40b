//! The one public way to get a driver for a program: its major version ([`crate::version`])
//! picks the 1.x driver ([`crate::OpencodeDriver`]) or the 2.x one ([`crate::OpencodeV2Driver`]).

use std::sync::Arc;

use kugetsu_core::agent::AgentDriver;

use crate::version::{Version, VersionError, detect};
use crate::{OpencodeDriver, OpencodeOptions, OpencodeV2Driver};

/// A driver picked for a program, and why.
pub struct Picked {
    /// The program's version.
    pub version: Version,
    /// Which driver: `opencode 1.x` or `opencode 2.x`.
    pub driver_name: &'static str,
    /// The driver.
    pub driver: Arc<dyn AgentDriver>,
    /// What it cannot do that the other could, in a sentence each.
    pub limits: &'static [&'static str],
}

/// The driver for `options`' program, by its version (cached in the options' export cache
/// directory). A major version above 2 is driven as 2.x, the newest this crate knows.
pub fn driver_for(options: OpencodeOptions) -> Result<Picked, VersionError> {
    let version = detect(&options.program, &options.base_env, options.export_cache.as_deref())?;
    Ok(if version.major <= 1 {
        Picked {
            version,
            driver_name: "opencode 1.x",
            driver: Arc::new(OpencodeDriver::new(options)),
            limits: &[],
        }
    } else {
        Picked {
            version,
            driver_name: "opencode 2.x",
            driver: Arc::new(OpencodeV2Driver::new(options)),
            limits: OpencodeV2Driver::LIMITS,
        }
    })
}
