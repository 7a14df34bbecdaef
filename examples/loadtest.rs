//! Load test (work in progress).
fn main() {}
