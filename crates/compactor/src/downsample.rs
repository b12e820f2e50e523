//! Downsampling raw blocks to 5m and 5m blocks to 1h. Being written: see `lib.rs`.
