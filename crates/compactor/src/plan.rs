//! Grouping and planning: which blocks to compact, downsample, expire or garbage-collect. Being
//! written: see `lib.rs`.
