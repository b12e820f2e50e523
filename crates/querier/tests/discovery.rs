//! Endpoint discovery for real: SRV records served by a tiny DNS server on 127.0.0.1 (answers
//! encoded with hickory-proto) pointing at two running stores, SD files that change under a
//! running querier, and per-endpoint TLS from the endpoint SD config against a mutual-TLS store.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Querier, series, start_store};
use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use prom_model::{Labels, Matcher};
use querier::discovery::{Discovery, DiscoveryConfig};
use querier::endpoints::StoreSet;
use querier::proxy::{Proxy, SeriesQuery};
use service_core::{
    GrpcClientFlags, GrpcFlags, GrpcServer, PromDuration, ServiceContext, TlsVersion,
};
use storeapi::MemoryStore;
use test_harness::wait_until;
use tokio::net::UdpSocket;

const T0: i64 = 1_700_000_000_000;
const SERVICE: &str = "_grpc._tcp.stores.test.";

/// What the DNS server answers.
#[derive(Debug, Clone)]
enum Zone {
    /// SRV records of `SERVICE`: `(target, port)`; every target has A 127.0.0.1.
    Srv(Vec<(&'static str, u16)>),
    /// SERVFAIL to everything.
    Broken,
}

/// A UDP DNS server on 127.0.0.1 answering from `zone`; counts the queries it got.
async fn dns_server(zone: Arc<Mutex<Zone>>) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&asked);
    tokio::spawn(async move {
        let mut buffer = [0u8; 4096];
        loop {
            let Ok((size, peer)) = socket.recv_from(&mut buffer).await else {
                return;
            };
            let Ok(request) = Message::from_vec(&buffer[..size]) else {
                continue;
            };
            let answer = answer(&request, &zone.lock().unwrap().clone(), &log);
            let _ = socket.send_to(&answer.to_bytes().unwrap(), peer).await;
        }
    });
    (address, asked)
}

fn answer(request: &Message, zone: &Zone, log: &Mutex<Vec<String>>) -> Message {
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_queries(request.queries().to_vec());
    let Some(query) = request.queries().first() else {
        response.set_response_code(ResponseCode::FormErr);
        return response;
    };
    let name = query.name().to_ascii();
    log.lock()
        .unwrap()
        .push(format!("{} {}", query.query_type(), name));
    let Zone::Srv(records) = zone else {
        response.set_response_code(ResponseCode::ServFail);
        return response;
    };
    match query.query_type() {
        RecordType::SRV if name.eq_ignore_ascii_case(SERVICE) => {
            for (target, port) in records {
                let srv = SRV::new(0, 10, *port, Name::from_str(target).unwrap());
                response.add_answer(Record::from_rdata(query.name().clone(), 0, RData::SRV(srv)));
            }
        }
        RecordType::A if records.iter().any(|(target, _)| name == *target) => {
            response.add_answer(Record::from_rdata(
                query.name().clone(),
                0,
                RData::A(A(Ipv4Addr::LOCALHOST)),
            ));
        }
        // AAAA of a known name: no records (NOERROR, empty).
        RecordType::AAAA if records.iter().any(|(target, _)| name == *target) => {}
        _ => {
            response.set_response_code(ResponseCode::NXDomain);
        }
    }
    response
}

fn discovery(endpoint: &str, nameserver: SocketAddr, registry: &prometheus::Registry) -> Discovery {
    Discovery::new(
        DiscoveryConfig {
            endpoints: vec![endpoint.to_owned()],
            // Re-resolve on every round.
            dns_interval: Duration::ZERO,
            nameservers: vec![nameserver],
            ..DiscoveryConfig::default()
        },
        registry,
    )
    .unwrap()
}

fn counter(registry: &prometheus::Registry, name: &str) -> f64 {
    registry
        .gather()
        .iter()
        .find(|family| family.name() == name)
        .map(|family| family.get_metric()[0].get_counter().get_value())
        .unwrap_or(-1.0)
}

async fn addresses(discovery: &Discovery) -> Vec<String> {
    discovery
        .targets()
        .await
        .into_iter()
        .map(|target| target.address)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_find_both_stores_and_failures_keep_the_last_good_set() {
    let a = start_store(
        &[("site", "a")],
        vec![series(&[("__name__", "up"), ("zone", "a")], [(T0, 1.0)])],
    )
    .await;
    let b = start_store(
        &[("site", "b")],
        vec![series(&[("__name__", "up"), ("zone", "b")], [(T0, 2.0)])],
    )
    .await;
    let (port_a, port_b) = (a.address().port(), b.address().port());
    let zone = Arc::new(Mutex::new(Zone::Srv(vec![
        ("store-a.stores.test.", port_a),
        ("store-b.stores.test.", port_b),
    ])));
    let (nameserver, asked) = dns_server(Arc::clone(&zone)).await;
    let want = {
        let mut want = vec![format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}")];
        want.sort();
        want
    };

    // dnssrv+: SRV, then A of each target with the SRV port; the querier's store set finds both
    // stores healthy and a fan-out reaches both.
    let registry = prometheus::Registry::new();
    let stores = Arc::new(
        StoreSet::new(
            discovery(&format!("dnssrv+{SERVICE}"), nameserver, &registry),
            GrpcClientFlags::default(),
            Duration::from_secs(5),
            &registry,
        )
        .unwrap(),
    );
    let healthy = healthy_after_update(&stores).await;
    assert_eq!(healthy, want, "dns queries: {:?}", asked.lock().unwrap());
    assert_eq!(up_series_count(&stores).await, 2);
    {
        let asked = asked.lock().unwrap();
        assert!(
            asked.iter().any(|query| query.starts_with("SRV ")),
            "{asked:?}"
        );
        assert!(
            asked.iter().any(|query| query == "A store-a.stores.test."),
            "{asked:?}"
        );
    }

    // The server breaks: the last good set stays, the failure is counted.
    *zone.lock().unwrap() = Zone::Broken;
    assert_eq!(healthy_after_update(&stores).await, want);
    assert!(counter(&registry, "thanos_query_endpoints_dns_failures_total") >= 1.0);
    assert!(counter(&registry, "thanos_query_endpoints_dns_lookups_total") >= 2.0);

    // The records change: re-resolution drops the store that left.
    *zone.lock().unwrap() = Zone::Srv(vec![("store-b.stores.test.", port_b)]);
    stores.update().await;
    let names: Vec<String> = stores
        .statuses()
        .into_iter()
        .map(|status| status.name)
        .collect();
    assert_eq!(names, [format!("127.0.0.1:{port_b}")]);

    // dnssrvnoa+: the SRV targets as they are, with no address lookups.
    *zone.lock().unwrap() = Zone::Srv(vec![
        ("store-a.stores.test.", port_a),
        ("store-b.stores.test.", port_b),
    ]);
    asked.lock().unwrap().clear();
    let registry = prometheus::Registry::new();
    let noa = discovery(&format!("dnssrvnoa+{SERVICE}"), nameserver, &registry);
    assert_eq!(
        addresses(&noa).await,
        [
            format!("store-a.stores.test:{port_a}"),
            format!("store-b.stores.test:{port_b}")
        ]
    );
    assert!(
        asked
            .lock()
            .unwrap()
            .iter()
            .all(|query| query.starts_with("SRV ")),
        "{:?}",
        asked.lock().unwrap()
    );

    // dns+ through the same server: A records with the given port.
    let registry = prometheus::Registry::new();
    let a_records = discovery("dns+store-a.stores.test:10901", nameserver, &registry);
    assert_eq!(addresses(&a_records).await, ["127.0.0.1:10901"]);
    drop((a, b));
}

/// Names of the stores `/api/v1/stores` lists without an error.
fn healthy_names(querier: &Querier) -> Vec<String> {
    let json = querier.ok("/api/v1/stores");
    let mut names: Vec<String> = json["data"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|items| items.as_array().cloned().unwrap_or_default())
        .filter(|item| item["lastError"].is_null())
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn wait_for_names(querier: &Querier, want: &[String]) {
    let result = wait_until(
        "stores to follow the SD file",
        Duration::from_secs(40),
        || healthy_names(querier) == want,
    );
    if let Err(error) = result {
        querier.process.print_log();
        panic!("{error}: have {:?}, want {want:?}", healthy_names(querier));
    }
}

/// Replaces `path` atomically (write, then rename), as config management does.
fn replace(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sd_config_file_and_file_sd_are_reloaded_when_they_change() {
    let stores = [
        start_store(&[("site", "a")], vec![]).await,
        start_store(&[("site", "b")], vec![]).await,
        start_store(&[("site", "c")], vec![]).await,
    ];
    let address = |index: usize| stores[index].address().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sd_config = dir.path().join("endpoints.yaml");
    let file_sd = dir.path().join("stores.json");
    replace(
        &sd_config,
        &format!("endpoints:\n  - address: {}\n", address(0)),
    );
    replace(&file_sd, "[]");
    let mut querier = Querier::start(
        &[
            format!("--endpoint.sd-config-file={}", sd_config.display()),
            format!("--store.sd-files={}", dir.path().join("*.json").display()),
        ],
        1,
    );
    let mut want = vec![address(0)];
    wait_for_names(&querier, &want);

    // A target appears in the file SD file (JSON, found through the glob).
    replace(
        &file_sd,
        &format!(r#"[{{"targets":["{}"],"labels":{{"x":"y"}}}}]"#, address(1)),
    );
    want.push(address(1));
    want.sort();
    wait_for_names(&querier, &want);

    // The endpoint SD config changes: store a leaves, store c (strict) arrives.
    replace(
        &sd_config,
        &format!(
            "endpoints:\n  - address: {}\n    strict: true\n",
            address(2)
        ),
    );
    let mut want = vec![address(1), address(2)];
    want.sort();
    wait_for_names(&querier, &want);

    // A broken file keeps the last good endpoints.
    replace(&sd_config, "endpoints: [ {address: ");
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(healthy_names(&querier), want);
    assert!(querier.process.try_wait().unwrap().is_none());
}

/// A store that speaks only mutual TLS (the test PKI's server certificate, clients must show a
/// certificate signed by its CA), stopped when the returned context is cancelled.
async fn start_tls_store(pki: &test_harness::TestPki) -> (SocketAddr, ServiceContext) {
    let flags = GrpcFlags {
        grpc_address: "127.0.0.1:0".parse().unwrap(),
        grpc_grace_period: PromDuration::new(Duration::from_secs(1)),
        grpc_server_tls_cert: Some(pki.server_cert.clone()),
        grpc_server_tls_key: Some(pki.server_key.clone()),
        grpc_server_tls_client_ca: Some(pki.ca.clone()),
        grpc_server_tls_min_version: TlsVersion::Tls13,
        grpc_server_max_connection_age: PromDuration::new(Duration::from_secs(3600)),
    };
    let ctx = ServiceContext::new();
    let mut server = GrpcServer::bind(&flags, &ctx).await.unwrap();
    let store = MemoryStore::new(
        Labels::from_pairs([("site", "tls")]),
        vec![series(&[("__name__", "up"), ("zone", "tls")], [(T0, 3.0)])],
    );
    server.add_service(storeapi::store_server(store.clone()));
    server.add_service(storeapi::info_server(store));
    let address = server.local_addr();
    tokio::spawn(server.serve(ctx.shutdown.clone()));
    (address, ctx)
}

/// How many `up` series a fan-out over `stores` (no partial responses) returns around `T0`.
async fn up_series_count(stores: &Arc<StoreSet>) -> usize {
    let fetched = Proxy::new(Arc::clone(stores), Duration::ZERO)
        .series(&SeriesQuery {
            min_time: T0 - 1000,
            max_time: T0 + 1000,
            matchers: vec![Matcher::equal("__name__", "up")],
            skip_chunks: true,
            partial_response: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(fetched.warnings.is_empty(), "{:?}", fetched.warnings);
    fetched.data.len()
}

/// Names of the healthy stores after one update round.
async fn healthy_after_update(stores: &StoreSet) -> Vec<String> {
    stores.update().await;
    let mut healthy: Vec<String> = stores
        .statuses()
        .into_iter()
        .filter(|status| status.healthy)
        .map(|status| status.name)
        .collect();
    healthy.sort();
    healthy
}

/// The endpoint SD config's `client_config` (and `default_client_config`) dial one store over
/// mutual TLS while another stays plaintext under the flags; a wrong CA in the config makes the
/// TLS store unhealthy, and editing the config file heals it on the next round.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_client_config_dials_a_tls_store_beside_a_plaintext_one() {
    let pki = test_harness::TestPki::generate().unwrap();
    let (tls_address, tls_ctx) = start_tls_store(&pki).await;
    let plain = start_store(
        &[("site", "plain")],
        vec![series(
            &[("__name__", "up"), ("zone", "plain")],
            [(T0, 1.0)],
        )],
    )
    .await;
    let mut want = vec![tls_address.to_string(), plain.address().to_string()];
    want.sort();
    let tls_entry = |ca: &std::path::Path| {
        format!(
            "  - address: {tls_address}\n    client_config:\n      server_name: localhost\n      tls_config:\n        enabled: true\n        ca_file: {}\n        cert_file: {}\n        key_file: {}\n",
            ca.display(),
            pki.client_cert.display(),
            pki.client_key.display()
        )
    };
    let new_set = |sd_config_file: std::path::PathBuf| {
        let registry = prometheus::Registry::new();
        let discovery = Discovery::new(
            DiscoveryConfig {
                sd_config_file: Some(sd_config_file),
                // Re-read the file on every round.
                sd_config_reload_interval: Duration::ZERO,
                ..DiscoveryConfig::default()
            },
            &registry,
        )
        .unwrap();
        StoreSet::new(
            discovery,
            GrpcClientFlags::default(),
            Duration::from_secs(5),
            &registry,
        )
        .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("endpoints.yaml");
    // The TLS store trusting `ca`, then the plaintext one.
    let write_tls_and_plain = |ca: &std::path::Path| {
        let yaml = format!(
            "endpoints:\n{}  - address: {}\n",
            tls_entry(ca),
            plain.address()
        );
        std::fs::write(&file, yaml).unwrap();
    };

    // Per-endpoint TLS beside a plaintext endpoint: both healthy, a fan-out reaches both.
    write_tls_and_plain(&pki.ca);
    let stores = Arc::new(new_set(file.clone()));
    assert_eq!(healthy_after_update(&stores).await, want);
    assert_eq!(up_series_count(&stores).await, 2);

    // The CA of the client certificate is not the server's: the TLS store is unhealthy, the
    // plaintext one is not. Fixing the file heals it (the channel is rebuilt for the new
    // settings).
    write_tls_and_plain(&pki.stranger_cert);
    assert_eq!(
        healthy_after_update(&stores).await,
        [plain.address().to_string()]
    );
    let status = stores
        .statuses()
        .into_iter()
        .find(|status| status.name == tls_address.to_string())
        .unwrap();
    assert!(status.last_error.is_some(), "{status:?}");
    write_tls_and_plain(&pki.ca);
    assert_eq!(healthy_after_update(&stores).await, want);

    // Without its client config the TLS store is unhealthy under the plaintext flags; the
    // `default_client_config` (Thanos' newer key name on the endpoint is accepted too) brings it
    // back. An endpoint whose own config sets nothing keeps the flags.
    std::fs::write(
        &file,
        format!(
            "endpoints:\n  - address: {tls_address}\n  - address: {}\n    grpc_client_config:\n      compression_type: none\n",
            plain.address()
        ),
    )
    .unwrap();
    let plain_only = new_set(file.clone());
    assert_eq!(
        healthy_after_update(&plain_only).await,
        [plain.address().to_string()]
    );
    std::fs::write(
        &file,
        format!(
            "default_client_config:\n  server_name: localhost\n  tls_config:\n    enabled: true\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\nendpoints:\n  - address: {tls_address}\n  - address: {}\n    grpc_client_config:\n      compression_type: none\n",
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display(),
            plain.address()
        ),
    )
    .unwrap();
    assert_eq!(healthy_after_update(&plain_only).await, want);
    tls_ctx.shutdown.cancel();
}

/// `--endpoint-group` is accepted and its store queried as one endpoint named by its host name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_group_flag_queries_the_group_as_one_store() {
    let store = start_store(
        &[("site", "group")],
        vec![series(&[("__name__", "up")], [(T0, 1.0)])],
    )
    .await;
    let name = format!("localhost:{}", store.address().port());
    let querier = tokio::task::spawn_blocking(move || {
        Querier::start(&[format!("--endpoint-group=dns+{name}")], 1)
    })
    .await
    .unwrap();
    let names = tokio::task::spawn_blocking(move || healthy_names(&querier))
        .await
        .unwrap();
    assert_eq!(names, [format!("localhost:{}", store.address().port())]);
}
