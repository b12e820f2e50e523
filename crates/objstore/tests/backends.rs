//! The conformance suite against every backend: filesystem, memory, and real servers started on
//! free 127.0.0.1 ports (moto S3, s3s-fs S3 with signature checks, Azurite). A missing server
//! program fails the test with instructions (`make test-deps`), it is never skipped.

use std::time::{Duration, Instant};

use objstore::{Bucket, BucketOptions, ErrorKind, ObjstoreConfig};
use prometheus::Registry;
use test_harness::{Azurite, Moto, S3sFs, TestPki};

const PART_SIZE: u64 = 5 * 1024 * 1024;

/// Short retries so failures surface quickly in tests.
fn test_options() -> BucketOptions {
    BucketOptions {
        max_retries: 2,
        init_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(500),
        retry_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        part_size: PART_SIZE,
        ..BucketOptions::default()
    }
}

async fn open(yaml: &str) -> Bucket {
    let config = ObjstoreConfig::parse(yaml).expect("parse objstore config");
    Bucket::from_config(&config, test_options(), &Registry::new())
        .await
        .expect("open bucket")
}

fn s3_yaml(endpoint: &str, access_key: &str, secret_key: &str) -> String {
    format!(
        "type: S3\nconfig:\n  bucket: thanos\n  endpoint: {endpoint}\n  access_key: {access_key}\n  secret_key: {secret_key}\n  insecure: true\n  part_size: {PART_SIZE}\n"
    )
}

#[tokio::test]
async fn filesystem_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: FILESYSTEM\nconfig:\n  directory: {}\n",
        dir.path().join("bucket").display()
    );
    let bucket = open(&yaml).await;
    assert_eq!(bucket.provider(), "FILESYSTEM");
    objstore::testing::run_all(&bucket).await;
}

#[tokio::test]
async fn filesystem_with_prefix_conforms_and_stays_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "type: filesystem\nconfig:\n  directory: {}\nprefix: tenant/a\n",
        dir.path().display()
    );
    let bucket = open(&yaml).await;
    objstore::testing::run_all(&bucket).await;
    bucket
        .upload("x/y", bytes::Bytes::from_static(b"1"))
        .await
        .unwrap();
    assert!(dir.path().join("tenant/a/x/y").is_file());
    assert_eq!(bucket.iter("").await.unwrap(), vec!["x/".to_owned()]);
}

#[tokio::test]
async fn in_memory_conforms() {
    let bucket = Bucket::in_memory("inmem", test_options(), &Registry::new()).unwrap();
    objstore::testing::run_all(&bucket).await;
}

#[tokio::test]
async fn moto_s3_conforms() {
    let moto = Moto::start().expect("start moto");
    moto.create_bucket("thanos").expect("create bucket");
    let bucket = open(&s3_yaml(&moto.endpoint(), "any", "any-secret")).await;
    assert_eq!(bucket.part_size(), Some(PART_SIZE));
    objstore::testing::run_all(&bucket).await;
}

/// S3 over HTTPS: the TLS handshake runs on the workspace's one crypto provider (ring, see
/// `objstore::tls`), the server certificate is checked against `tls_config.ca_file`, and a
/// bucket that does not trust that CA is refused.
#[tokio::test]
async fn moto_s3_over_https_verifies_the_server_certificate() {
    let pki = TestPki::generate().expect("generate certificates");
    let moto = Moto::start_tls(&pki.server_cert, &pki.server_key).expect("start moto with TLS");
    objstore::tls::install_crypto_provider();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&pki.ca).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let created = client
        .put(format!("https://{}/thanos", moto.endpoint()))
        .send()
        .await
        .expect("create the bucket over https");
    assert!(created.status().is_success(), "{}", created.status());

    let https_yaml = |tls: &str| {
        format!(
            "type: S3\nconfig:\n  bucket: thanos\n  endpoint: {}\n  access_key: any\n  secret_key: any-secret\n  part_size: {PART_SIZE}\n  http_config:\n    tls_config:\n{tls}",
            moto.endpoint()
        )
    };
    let trusted = open(&https_yaml(&format!(
        "      ca_file: {}\n",
        pki.ca.display()
    )))
    .await;
    objstore::testing::run_all(&trusted).await;

    let untrusting = open(&https_yaml("      server_name: \"\"\n")).await;
    let error = untrusting
        .upload("refused", bytes::Bytes::from_static(b"x"))
        .await
        .expect_err("a server certificate from an unknown CA is refused");
    assert!(
        !trusted.exists("refused").await.unwrap(),
        "nothing was written through the refused connection: {error}"
    );
}

#[tokio::test]
async fn s3s_fs_conforms() {
    let server = S3sFs::start("AKIDTHANOS", "secret-for-tests").expect("start s3s-fs");
    server.create_bucket("thanos").expect("create bucket");
    let yaml = s3_yaml(&server.endpoint(), server.access_key(), server.secret_key());
    let bucket = open(&yaml).await;
    objstore::testing::run_all(&bucket).await;
}

#[tokio::test]
async fn s3s_fs_with_prefix_conforms() {
    let server = S3sFs::start("AKIDTHANOS", "secret-for-tests").expect("start s3s-fs");
    server.create_bucket("thanos").expect("create bucket");
    let yaml = format!(
        "{}prefix: some/prefix\n",
        s3_yaml(&server.endpoint(), server.access_key(), server.secret_key())
    );
    let bucket = open(&yaml).await;
    objstore::testing::run_all(&bucket).await;
}

#[tokio::test]
async fn s3s_fs_refuses_a_wrong_secret_key_clearly() {
    let server = S3sFs::start("AKIDTHANOS", "the-right-secret").expect("start s3s-fs");
    server.create_bucket("thanos").expect("create bucket");
    let wrong_secret = "the-wrong-secret";
    let bucket = open(&s3_yaml(
        &server.endpoint(),
        server.access_key(),
        wrong_secret,
    ))
    .await;
    let started = Instant::now();
    let error = bucket
        .upload("a", bytes::Bytes::from_static(b"x"))
        .await
        .expect_err("upload with a wrong secret must fail");
    let message = error.to_string();
    assert_eq!(error.kind(), ErrorKind::Denied, "{message}");
    assert!(message.contains("upload \"a\""), "{message}");
    assert!(
        message.contains("SignatureDoesNotMatch") || message.contains("403"),
        "{message}"
    );
    assert!(
        !message.contains(wrong_secret),
        "secret in error: {message}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "denied requests are not retried"
    );
    let read_error = bucket.get("a").await.expect_err("get with a wrong secret");
    assert_eq!(read_error.kind(), ErrorKind::Denied, "{read_error}");
    assert!(!read_error.is_not_found());
    assert!(!format!("{bucket:?}").contains(wrong_secret));
}

#[tokio::test]
async fn azurite_conforms() {
    let azurite = Azurite::start().expect("start azurite");
    // The container does not exist yet: `storage_create_container` (Thanos' default) creates it.
    let yaml = format!(
        "type: AZURE\nconfig:\n  storage_account: {}\n  container: thanos\n  storage_connection_string: \"{}\"\n",
        test_harness::AZURITE_ACCOUNT,
        azurite.connection_string()
    );
    let bucket = open(&yaml).await;
    assert_eq!(bucket.name(), "thanos");
    objstore::testing::run_all(&bucket).await;
    // Opening again finds the container already there.
    let again = open(&yaml).await;
    assert!(again.iter("").await.unwrap().is_empty());
}

#[tokio::test]
async fn azurite_without_container_creation_reports_the_missing_container() {
    let azurite = Azurite::start().expect("start azurite");
    let yaml = format!(
        "type: AZURE\nconfig:\n  storage_account: {}\n  container: absent\n  storage_create_container: false\n  storage_connection_string: \"{}\"\n",
        test_harness::AZURITE_ACCOUNT,
        azurite.connection_string()
    );
    let bucket = open(&yaml).await;
    let error = bucket
        .upload("a", bytes::Bytes::from_static(b"x"))
        .await
        .expect_err("upload into a missing container");
    assert!(
        !error.to_string().contains(test_harness::AZURITE_KEY),
        "{error}"
    );
}

/// The server dies mid-test: the next call fails after its retries, within a bounded time.
#[tokio::test]
async fn killed_server_gives_an_error_in_bounded_time() {
    let mut moto = Moto::start().expect("start moto");
    moto.create_bucket("thanos").expect("create bucket");
    let bucket = open(&s3_yaml(&moto.endpoint(), "any", "any-secret")).await;
    bucket
        .upload("before", bytes::Bytes::from_static(b"alive"))
        .await
        .expect("upload while the server runs");
    moto.process().kill();

    for operation in ["get", "upload", "iter", "exists"] {
        let started = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(30), async {
            match operation {
                "get" => bucket.get("before").await.map(|_| ()),
                "upload" => {
                    bucket
                        .upload("after", bytes::Bytes::from_static(b"x"))
                        .await
                }
                "iter" => bucket.iter("").await.map(|_| ()),
                _ => bucket.exists("before").await.map(|_| ()),
            }
        })
        .await;
        let elapsed = started.elapsed();
        let result = outcome.unwrap_or_else(|_| panic!("{operation} hung for 30s"));
        let error = result.expect_err("a call to a dead server must fail");
        assert_eq!(error.kind(), ErrorKind::Backend, "{operation}: {error}");
        assert!(!error.is_not_found(), "{operation}: {error}");
        assert!(
            elapsed < Duration::from_secs(30),
            "{operation} took {elapsed:?}"
        );
    }
}
