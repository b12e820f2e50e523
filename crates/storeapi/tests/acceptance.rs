//! The StoreAPI acceptance suite against the in-memory reference store, served by tonic on a
//! real 127.0.0.1 port.

use std::future::Future;

use prom_model::Labels;
use storeapi::testing::{StoreFactory, TestStore, run_acceptance};
use storeapi::transport::{connect, serve_store};
use storeapi::{Compression, MemoryStore, SeriesData, info_client, store_client};

struct MemoryFactory {
    compression: Compression,
}

impl StoreFactory for MemoryFactory {
    fn start(
        &self,
        external_labels: Labels,
        series: Vec<SeriesData>,
    ) -> impl Future<Output = TestStore> + Send {
        let compression = self.compression;
        async move {
            let store = MemoryStore::new(external_labels, series);
            let server = serve_store("127.0.0.1:0", store.clone(), store)
                .await
                .expect("start in-memory store");
            let channel = connect(server.address())
                .await
                .expect("connect to in-memory store");
            TestStore {
                store: store_client(channel.clone(), compression),
                info: info_client(channel, compression),
                guard: Box::new(server),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_acceptance_suite() {
    run_acceptance(&MemoryFactory {
        compression: Compression::None,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_store_passes_the_acceptance_suite_with_gzip() {
    run_acceptance(&MemoryFactory {
        compression: Compression::Gzip,
    })
    .await;
}

/// A store that forgets its external labels: the suite must reject it.
struct ForgetfulFactory;

impl StoreFactory for ForgetfulFactory {
    fn start(
        &self,
        _external_labels: Labels,
        series: Vec<SeriesData>,
    ) -> impl Future<Output = TestStore> + Send {
        MemoryFactory {
            compression: Compression::None,
        }
        .start(Labels::empty(), series)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_rejects_a_store_without_external_labels() {
    let outcome = tokio::spawn(async { run_acceptance(&ForgetfulFactory).await }).await;
    let error = outcome.expect_err("the suite must fail for a store that drops external labels");
    assert!(error.is_panic(), "{error}");
}
