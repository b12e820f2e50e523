//! XOR chunk encode and decode throughput (placeholder, filled in below).
fn main() {}
