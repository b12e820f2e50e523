//! Every objstore.yml example under `examples-config/` parses, is shown verbatim in the README,
//! and (where no network is needed) opens a bucket.

use std::path::PathBuf;

use objstore::config::{AzureConfig, GcsConfig, S3Config};
use objstore::{Bucket, BucketOptions, ObjstoreConfig, ProviderConfig};
use prometheus::Registry;

const EXAMPLES: [&str; 6] = [
    "s3.yml",
    "s3-compatible.yml",
    "azure.yml",
    "azure-connection-string.yml",
    "gcs.yml",
    "filesystem.yml",
];

fn example_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples-config")
        .join(file)
}

fn load(file: &str) -> ObjstoreConfig {
    let path = example_path(file);
    ObjstoreConfig::from_flags(Some(&path), None)
        .unwrap_or_else(|error| panic!("example {file}: {error}"))
}

fn s3(file: &str) -> S3Config {
    match load(file).provider {
        ProviderConfig::S3(config) => config,
        other => panic!("{file}: not S3: {other:?}"),
    }
}

fn azure(file: &str) -> AzureConfig {
    match load(file).provider {
        ProviderConfig::Azure(config) => config,
        other => panic!("{file}: not AZURE: {other:?}"),
    }
}

fn gcs(file: &str) -> GcsConfig {
    match load(file).provider {
        ProviderConfig::Gcs(config) => config,
        other => panic!("{file}: not GCS: {other:?}"),
    }
}

#[test]
fn every_example_parses_with_the_values_written() {
    let aws = s3("s3.yml");
    assert_eq!(aws.bucket, "thanos-metrics");
    assert_eq!(aws.sse_config.kind, "SSE-S3");
    assert_eq!(aws.max_retries, 5);
    assert_eq!(load("s3.yml").prefix, "cluster-eu1");
    let minio = s3("s3-compatible.yml");
    assert!(minio.insecure);
    assert_eq!(minio.bucket_lookup_type, "path");
    assert_eq!(minio.put_user_metadata.len(), 1);
    let shared_key = azure("azure.yml");
    assert_eq!(shared_key.container, "thanos");
    assert_eq!(shared_key.pipeline_config.max_tries, 3);
    let connection = azure("azure-connection-string.yml");
    assert!(!connection.storage_connection_string.is_empty());
    assert_eq!(gcs("gcs.yml").bucket, "thanos-metrics");
    match load("filesystem.yml").provider {
        ProviderConfig::Filesystem(config) => {
            assert_eq!(config.directory, PathBuf::from("/var/lib/thanos/bucket"))
        }
        other => panic!("filesystem.yml: {other:?}"),
    }
}

#[test]
fn examples_never_show_secrets_in_debug_output() {
    for (file, secret) in [
        ("s3.yml", "example-secret-key"),
        ("s3-compatible.yml", "example-secret-key"),
        ("azure.yml", "ZXhhbXBsZS1rZXk="),
        ("azure-connection-string.yml", "ZXhhbXBsZS1rZXk="),
    ] {
        let debug = format!("{:?}", load(file));
        assert!(!debug.contains(secret), "{file}: secret in {debug}");
        assert!(debug.contains("<redacted>"), "{file}: {debug}");
    }
}

#[test]
fn readme_shows_every_example_verbatim() {
    let readme_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&readme_path).expect("read README.md");
    for file in EXAMPLES {
        let example = std::fs::read_to_string(example_path(file)).expect("read example");
        assert!(
            readme.contains(example.trim()),
            "README.md does not show examples-config/{file} verbatim"
        );
    }
}

#[tokio::test]
async fn s3_and_gcs_examples_open_a_bucket_without_network() {
    for file in ["s3.yml", "s3-compatible.yml", "gcs.yml"] {
        let bucket = Bucket::from_config(&load(file), BucketOptions::default(), &Registry::new())
            .await
            .unwrap_or_else(|error| panic!("open {file}: {error}"));
        assert!(!bucket.name().is_empty());
        assert!(!format!("{bucket:?}").contains("example-secret-key"));
    }
    let minio = Bucket::from_config(
        &load("s3-compatible.yml"),
        BucketOptions::default(),
        &Registry::new(),
    )
    .await
    .unwrap();
    assert_eq!(minio.part_size(), Some(64 * 1024 * 1024));
}
