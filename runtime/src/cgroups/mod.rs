//! cgroups: the file-level part (detection, OOM kills, usage, pids,
//! removal) is shared with the supervisor, in `berth_supervise::cgroups`;
//! pod cgroups with their limits are here ([`PodCgroup`]), and pressure
//! stall figures ([`pressure`]).

pub mod host_fit;
mod pod;
pub mod pressure;

pub use berth_supervise::cgroups::*;
pub use pod::{CgroupWriteError, PodCgroup, shares, weight};
