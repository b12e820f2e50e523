//! meta.json parsing over arbitrary bytes: never panics, and a meta that parses is written back
//! into bytes that parse again. (Block marks have their own target, `marks`.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use tsdb_block::meta::BlockMeta;

fuzz_target!(|data: &[u8]| {
    if let Ok(meta) = BlockMeta::from_json(data, "meta.json") {
        let written = meta.to_json();
        let reread = BlockMeta::from_json(&written, "meta.json").expect("our own meta.json parses");
        assert_eq!(reread.ulid, meta.ulid);
        assert_eq!(reread.thanos.is_some(), meta.thanos.is_some());
    }
});
