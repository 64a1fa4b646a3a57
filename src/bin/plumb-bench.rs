//! Placeholder replaced by the benchmark work in progress.
fn main() {}
