//! Merging source blocks into one output block (horizontal and vertical compaction, offline
//! de-duplication). Being written: see the module plan in `lib.rs`.
