//! Block selection by `--selector.relabel-config`: the relabel code lives in
//! [`block_fetcher::relabel`], shared with the compactor and bucket web; re-exported here for the
//! store gateway's users (the gRPC block matchers, the fuzz target).

pub use block_fetcher::relabel::{BLOCK_ID_LABEL, RelabelConfig};
