//! `--min-time` / `--max-time`: [`TimeBound`] lives in [`block_fetcher::time`], shared with the
//! compactor and bucket web; re-exported here.

pub use block_fetcher::time::TimeBound;
