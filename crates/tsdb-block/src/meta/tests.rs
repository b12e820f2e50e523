use super::*;

const ID: &str = "01DN3SK96XDAEKRB1AN30AAW6E";

fn check_round_trip(json: &str) -> BlockMeta {
    let meta = BlockMeta::from_json(json.as_bytes(), "test").unwrap();
    assert_eq!(String::from_utf8(meta.to_json()).unwrap(), json);
    meta
}

#[test]
fn rewrites_a_prometheus_meta_byte_for_byte() {
    let golden = include_str!("../../testdata/promtool-meta.json");
    let meta = check_round_trip(golden);
    assert_eq!(meta.stats.num_samples, 12);
    assert_eq!(meta.compaction.level, 1);
    assert_eq!(meta.compaction.sources, [meta.ulid]);
    assert!(meta.thanos.is_none());
}

#[test]
fn writes_a_thanos_meta_as_thanos_does() {
    let expected = format!(
        "{{\n\t\"ulid\": \"{ID}\",\n\t\"minTime\": 1,\n\t\"maxTime\": 2,\n\t\"stats\": {{}},\n\
         \t\"compaction\": {{\n\t\t\"level\": 1,\n\t\t\"sources\": [\n\t\t\t\"{ID}\"\n\t\t]\n\t}},\n\
         \t\"version\": 1,\n\t\"thanos\": {{\n\t\t\"version\": 1,\n\t\t\"labels\": {{\n\
         \t\t\t\"a\": \"x\\u003c\\u0026\\u003e\",\n\t\t\t\"b\": \"\\u2028\"\n\t\t}},\n\
         \t\t\"downsample\": {{\n\t\t\t\"resolution\": 300000\n\t\t}},\n\t\t\"source\": \"sidecar\",\n\
         \t\t\"index_stats\": {{}},\n\t\t\"upload_time\": \"0001-01-01T00:00:00Z\"\n\t}}\n}}\n"
    );
    let ulid: Ulid = ID.parse().unwrap();
    let mut meta = BlockMeta::new(ulid, 1, 2);
    let labels = BTreeMap::from([
        ("b".to_owned(), "\u{2028}".to_owned()),
        ("a".to_owned(), "x<&>".to_owned()),
    ]);
    meta.thanos = Some(ThanosMeta::new(labels, 300_000, source::SIDECAR));
    assert_eq!(String::from_utf8(meta.to_json()).unwrap(), expected);
    let parsed = check_round_trip(&expected);
    assert_eq!(parsed, meta);
    assert_eq!(parsed.resolution(), 300_000);
}

#[test]
fn every_thanos_field_round_trips() {
    let json = format!(
        r#"{{
	"ulid": "{ID}",
	"minTime": 1567641600000,
	"maxTime": 1568851200000,
	"stats": {{
		"numSamples": 10,
		"numFloatSamples": 8,
		"numHistogramSamples": 2,
		"numSeries": 3,
		"numChunks": 4,
		"numTombstones": 5
	}},
	"compaction": {{
		"level": 4,
		"sources": [
			"{ID}"
		],
		"deletable": true,
		"parents": [
			{{
				"ulid": "{ID}",
				"minTime": 0,
				"maxTime": 7
			}}
		],
		"failed": true,
		"hints": [
			"from-out-of-order"
		]
	}},
	"version": 1,
	"thanos": {{
		"labels": {{}},
		"downsample": {{
			"resolution": 0
		}},
		"source": "compactor",
		"segment_files": [
			"000001"
		],
		"files": [
			{{
				"rel_path": "chunks/000001",
				"size_bytes": 1234,
				"hash": {{
					"hashFunc": "SHA256",
					"value": "abc"
				}}
			}},
			{{
				"rel_path": "meta.json"
			}}
		],
		"rewrites": [
			{{
				"sources": [
					"{ID}"
				],
				"deletions_applied": [
					{{
						"matchers": "{{a=\"b\"}}",
						"intervals": [
							{{
								"Mint": 0,
								"Maxt": 1
							}}
						]
					}}
				]
			}}
		],
		"index_stats": {{
			"series_max_size": 99,
			"chunk_max_size": 7
		}},
		"extensions": {{
			"parquet_migrated": true
		}},
		"upload_time": "2024-01-01T00:00:00.12Z",
		"future_field": [
			1
		]
	}},
	"future_top": "kept"
}}
"#
    );
    let meta = check_round_trip(&json);
    let thanos = meta.thanos.as_ref().unwrap();
    assert_eq!(thanos.version, 0);
    assert_eq!(thanos.upload_time_millis(), Some(1_704_067_200_120));
    assert_eq!(thanos.files[0].hash.as_ref().unwrap().hash_func, "SHA256");
    assert_eq!(meta.stats.num_tombstones, 5);
    assert_eq!(meta.extra["future_top"], "kept");
}

#[test]
fn readers_accept_any_layout_and_go_nulls() {
    let json = format!(
        r#"{{"ulid":"{}","minTime":0,"maxTime":10,"version":1,"compaction":{{"level":2,"sources":null,"hints":null}},
        "thanos":{{"labels":null,"downsample":{{"resolution":3600000}},"source":"receive","files":null,"extensions":null,"upload_time":"0001-01-01T00:00:00Z"}}}}"#,
        ID.to_lowercase()
    );
    let meta = BlockMeta::from_json(json.as_bytes(), "test").unwrap();
    assert_eq!(meta.ulid.to_string(), ID);
    assert!(meta.compaction.sources.is_empty());
    let thanos = meta.thanos.unwrap();
    assert!(thanos.labels.is_empty());
    assert_eq!(thanos.extensions, None);
    assert_eq!(thanos.upload_time, None);
    assert_eq!(thanos.downsample.resolution, 3_600_000);
}

#[test]
fn unsupported_versions_and_garbage_are_invalid_meta() {
    let check = |json: String, detail: &str| {
        let error = BlockMeta::from_json(json.as_bytes(), "blk/meta.json").unwrap_err();
        match &error {
            Error::InvalidMeta { path, detail: got } => {
                assert_eq!(path, "blk/meta.json");
                assert!(got.contains(detail), "{error}");
            }
            other => panic!("unexpected error {other}"),
        }
    };
    check(
        format!(r#"{{"ulid":"{ID}","minTime":0,"maxTime":1,"version":2}}"#),
        "unsupported meta version 2",
    );
    check(
        format!(r#"{{"ulid":"{ID}","minTime":0,"maxTime":1}}"#),
        "unsupported meta version 0",
    );
    check(
        format!(
            r#"{{"ulid":"{ID}","minTime":0,"maxTime":1,"version":1,"thanos":{{"version":2}}}}"#
        ),
        "unsupported thanos section version 2",
    );
    check(
        r#"{"ulid":"not-a-ulid","minTime":0,"maxTime":1,"version":1}"#.to_owned(),
        "",
    );
    check(
        format!(r#"{{"ulid":"{ID}","minTime":"0","maxTime":1,"version":1}}"#),
        "",
    );
    check("{".to_owned(), "EOF");
    let thanos_v1 = format!(
        r#"{{"ulid":"{ID}","minTime":0,"maxTime":1,"version":1,"thanos":{{"version":1}}}}"#
    );
    assert!(BlockMeta::from_json(thanos_v1.as_bytes(), "x").is_ok());
}

#[test]
fn writes_atomically_and_reads_back() {
    let block_dir = tempfile::tempdir().unwrap();
    let ulid: Ulid = ID.parse().unwrap();
    let mut meta = BlockMeta::new(ulid, 0, 7_200_000);
    meta.stats.num_series = 3;
    let size = meta.write_to_dir(block_dir.path()).unwrap();
    assert_eq!(
        size,
        fs::metadata(block_dir.path().join(META_FILENAME))
            .unwrap()
            .len()
    );
    assert!(!block_dir.path().join("meta.json.tmp").exists());
    assert_eq!(BlockMeta::read_from_dir(block_dir.path()).unwrap(), meta);
    let missing = BlockMeta::read_from_dir(&block_dir.path().join("nope")).unwrap_err();
    assert!(
        matches!(missing, Error::Io { action: "read", .. }),
        "{missing}"
    );
}
