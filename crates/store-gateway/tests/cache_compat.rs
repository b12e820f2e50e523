//! The shared index cache speaks Thanos' key and value formats: entries put into memcached under
//! the keys Thanos' store gateway uses are read, and the entries the gateway writes are found
//! under those keys with Thanos' value encodings. Keys are spelled out here from the format
//! (`P:`/`EP:`/`S:`, block ULID, base64url of blake2b-256, `:dss`), not from the crate's code.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use base64::Engine as _;
use blake2::{Blake2b256, Digest};
use common::*;
use test_harness::Memcached;

fn hash(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Blake2b256::digest(text.as_bytes()))
}

fn memcached_set(address: &str, key: &str, value: &[u8]) {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "set {key} 0 0 {}\r\n", value.len()).unwrap();
    stream.write_all(value).unwrap();
    stream.write_all(b"\r\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    assert_eq!(line, "STORED\r\n");
}

fn memcached_get(address: &str, key: &str) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "get {key}\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    if line == "END\r\n" {
        return None;
    }
    let length: usize = line.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    let mut value = vec![0u8; length + 2];
    reader.read_exact(&mut value).unwrap();
    value.truncate(length);
    Some(value)
}

/// Decodes Thanos' `dss` postings: header, snappy framed stream, uvarint deltas.
fn decode_dss(value: &[u8]) -> Vec<u64> {
    assert_eq!(&value[..3], b"dss", "postings header");
    let mut deltas = Vec::new();
    snap::read::FrameDecoder::new(&value[3..])
        .read_to_end(&mut deltas)
        .unwrap();
    let (mut refs, mut current, mut shift, mut value) = (Vec::new(), 0u64, 0, 0u64);
    for byte in deltas {
        value |= u64::from(byte & 0x7f) << shift;
        shift += 7;
        if byte < 0x80 {
            current += value;
            refs.push(current);
            (shift, value) = (0, 0);
        }
    }
    refs
}

#[test]
fn memcached_entries_use_thanos_keys_and_values() {
    let blocks = make_blocks(6, 1, &[("cluster", "eu1")]).unwrap();
    assert_eq!(blocks.ids.len(), 1, "one block");
    let block = &blocks.ids[0];
    let bucket = tempfile::tempdir().unwrap();
    copy_dir(&blocks.path(block), &bucket.path().join(block)).unwrap();
    let memcached = Memcached::start().unwrap();
    let address = memcached.address();

    // What Thanos would have cached for {__name__="requests_total", job="j1"}: an empty
    // expanded postings list (a valid snappy stream with no chunk). Served from the cache, the
    // query returns nothing although the block has two such series.
    let j1_key = format!(
        "EP:{block}:{}:dss",
        hash(r#"__name__="requests_total";job="j1""#)
    );
    memcached_set(&address, &j1_key, b"dss\xff\x06\x00\x00sNaPpY");

    let gateway = Gateway::start(
        &fs_objstore(bucket.path()),
        &[&format!(
            "--index-cache.config=type: MEMCACHED\nconfig:\n  addresses: [\"{address}\"]\n  timeout: 2s\n"
        )],
    )
    .unwrap();
    let runtime = runtime();
    let j1 = runtime
        .block_on(series(
            &gateway,
            request(vec![eq("job", "j1"), eq("__name__", "requests_total")]),
        ))
        .unwrap();
    assert!(
        j1.series.is_empty(),
        "the injected expanded postings were not used: {:?}",
        j1.series
    );
    let j2 = runtime
        .block_on(series(
            &gateway,
            request(vec![eq("job", "j2"), eq("__name__", "requests_total")]),
        ))
        .unwrap();
    assert_eq!(j2.series.len(), 2, "series 2 and 5 have job j2");

    // The gateway wrote Thanos' entries.
    let expanded = memcached_get(
        &address,
        &format!(
            "EP:{block}:{}:dss",
            hash(r#"__name__="requests_total";job="j2""#)
        ),
    )
    .expect("expanded postings entry");
    let refs = decode_dss(&expanded);
    assert_eq!(refs.len(), 2);
    let job = memcached_get(&address, &format!("P:{block}:{}:dss", hash("job:j2")))
        .expect("postings entry of job=j2");
    assert_eq!(decode_dss(&job), refs);
    let name = memcached_get(
        &address,
        &format!("P:{block}:{}:dss", hash("__name__:requests_total")),
    )
    .expect("postings entry of __name__=requests_total");
    let all_requests = decode_dss(&name);
    assert_eq!(all_requests.len(), 6);
    assert!(
        refs.iter()
            .all(|reference| all_requests.contains(reference))
    );
    for reference in &refs {
        // Series keys use the byte offset (reference × 16); the value is the entry's body:
        // label count 3 (__name__, instance, job) first, no length prefix.
        let body = memcached_get(&address, &format!("S:{block}:{}", reference * 16))
            .unwrap_or_else(|| panic!("series entry {reference}"));
        assert_eq!(body[0], 3, "label count first");
    }
}
