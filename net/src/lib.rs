//! berth network (issue 7).
