//! The demo world (in progress).
