//! Office Mode address pools (work in progress).
