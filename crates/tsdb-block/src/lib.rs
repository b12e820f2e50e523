//! Prometheus TSDB blocks, read and written byte-for-byte as Prometheus does.
//!
//! A block is a folder named by its ULID holding `meta.json`, `index`, `chunks/NNNNNN` segment files
//! and `tombstones`. This crate is synchronous and knows nothing about object storage or async
//! runtimes: readers work over an abstract byte source so the same code reads a local file or byte
//! ranges fetched from a bucket.
//!
//! **Invariants**
//! - Every length, count and offset read from a file is checked against the bytes that are there
//!   before it is used: bad input gives an [`Error`] naming the file, the section and the offset,
//!   never a panic, an endless loop or a huge allocation.
//! - A block being written lives under `<ulid>.tmp-for-creation` and is renamed into place only when
//!   complete, so a crash never leaves a half block that looks whole.
//!
//! Modules: [`encoding`] (bounds-checked decoding and encoding of the on-disk integers).
//! [`source`] (a file's bytes: mmap or memory), [`index`] (index format v2 writer and reader,
//! matcher selection), [`postings`] (series reference lists and their intersection, union and
//! difference), [`reader`] (a whole block read through byte sources, tombstones applied),
//! [`writer`] (streaming block writer with bounded memory, `rewrite`), [`dump`] (what
//! `promtool tsdb dump` prints), [`chunkenc`] (XOR chunk encoder and iterator, chunk cutting,
//! encoding ids), [`chunks`] (segment files and chunk references), [`meta`] (`meta.json` with
//! Thanos' section, block marks), [`tombstones`] (deleted intervals and their file).

pub mod chunkenc;
pub mod chunks;
pub mod dump;
pub mod encoding;
mod error;
pub mod index;
pub mod meta;
pub mod postings;
pub mod reader;
pub mod source;
pub mod tombstones;
pub mod writer;

pub use error::{Error, Result};
