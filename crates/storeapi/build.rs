//! Compiles `proto/` into Rust with prost and tonic, without a system `protoc`: `protox` parses
//! the `.proto` files into a descriptor set that `tonic-prost-build` turns into code in `OUT_DIR`.

use std::path::PathBuf;

const PROTO_FILES: &[&str] = &[
    "thanos/types.proto",
    "thanos/rpc.proto",
    "thanos/info.proto",
    "thanos/hints.proto",
    "prometheus/types.proto",
    "prometheus/remote.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_root = manifest_dir.join("../../proto");
    let files: Vec<PathBuf> = PROTO_FILES
        .iter()
        .map(|file| proto_root.join(file))
        .collect();
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    let descriptors = protox::compile(&files, [&proto_root])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        // Chunk bytes are shared, not copied: a store slices them out of the ranges it read and
        // a merged series clones them by reference count.
        .bytes(".thanos.Chunk.data")
        // Only downsampled chunks carry aggregates: boxed, a raw chunk's `AggrChunk` takes 104
        // bytes instead of 304 (a querier holds one per chunk of every selected series).
        .boxed(".thanos.AggrChunk.count")
        .boxed(".thanos.AggrChunk.sum")
        .boxed(".thanos.AggrChunk.min")
        .boxed(".thanos.AggrChunk.max")
        .boxed(".thanos.AggrChunk.counter")
        .compile_fds(descriptors)?;
    Ok(())
}
