//! cgroups: the file-level part (detection, OOM kills, usage, pids,
//! removal) is shared with the supervisor, in `berth_supervise::cgroups`;
//! pod cgroups with their limits are here ([`PodCgroup`]).

mod pod;

pub use berth_supervise::cgroups::*;
pub use pod::{CgroupWriteError, PodCgroup};
