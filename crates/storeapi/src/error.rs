//! Errors of the StoreAPI helpers and their gRPC status.

/// An error converting StoreAPI messages or talking to a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A label matcher could not be built (bad regex).
    #[error("invalid matcher: {source}")]
    InvalidMatcher {
        /// What the data model said, naming the label and pattern.
        source: prom_model::Error,
    },
    /// A label matcher carries a type number outside `EQ..NRE`.
    #[error("unknown matcher type {value} for label {name:?}")]
    UnknownMatcherType {
        /// The label the matcher applies to.
        name: String,
        /// The type number on the wire.
        value: i32,
    },
    /// A label set is not a valid set (a name repeats).
    #[error("invalid label set: {source}")]
    InvalidLabels {
        /// What the data model said.
        source: prom_model::Error,
    },
    /// A chunk's encoding number is unknown, or this crate cannot decode that encoding.
    #[error("unsupported chunk encoding {encoding}")]
    UnsupportedChunkEncoding {
        /// The encoding, as the wire or file names it.
        encoding: String,
    },
    /// A chunk's bytes are corrupt.
    #[error("decode chunk: {detail}")]
    ChunkDecode {
        /// What was wrong and where.
        detail: String,
    },
    /// An `AggrChunk` lacks the part that was asked for.
    #[error("aggregate chunk has no {aggregate} part")]
    MissingAggregate {
        /// The aggregate's name, e.g. `raw` or `count`.
        aggregate: &'static str,
    },
    /// A `google.protobuf.Any` payload is not the message expected or does not decode.
    #[error("decode hints of type {type_url:?}: {detail}")]
    InvalidHints {
        /// The payload's type URL.
        type_url: String,
        /// Why it was rejected.
        detail: String,
    },
    /// Serving or connecting failed at the transport level.
    #[error("grpc transport: {source}")]
    Transport {
        /// The transport error.
        #[from]
        source: tonic::transport::Error,
    },
    /// Binding the listening socket failed.
    #[error("listen on {address}: {source}")]
    Listen {
        /// The address that was asked for.
        address: String,
        /// The socket error.
        source: std::io::Error,
    },
}

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The gRPC status code a server reports for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            Error::InvalidMatcher { .. }
            | Error::UnknownMatcherType { .. }
            | Error::InvalidLabels { .. }
            | Error::InvalidHints { .. }
            | Error::MissingAggregate { .. } => tonic::Code::InvalidArgument,
            Error::UnsupportedChunkEncoding { .. } => tonic::Code::Unimplemented,
            Error::ChunkDecode { .. } => tonic::Code::DataLoss,
            Error::Transport { .. } | Error::Listen { .. } => tonic::Code::Unavailable,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}
