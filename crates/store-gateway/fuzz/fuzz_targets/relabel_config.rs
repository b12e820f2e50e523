//! The selector relabel YAML from outside (`--selector.relabel-config`), parsed and applied to a
//! block's label set. The input is the YAML, a NUL byte, then the labels as `name=value` lines
//! (with the `__block_id` label added as the store gateway adds it). Never panics; applying the
//! rules is deterministic, and no rules keep the labels as they are.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use store_gateway::relabel::{BLOCK_ID_LABEL, RelabelConfig};

fn labels(text: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    labels.insert(
        BLOCK_ID_LABEL.to_owned(),
        "01DN3SK96XDAEKRB1AN30AAW6E".to_owned(),
    );
    labels
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (yaml, label_text) = text
        .split_once('\0')
        .unwrap_or((text, "cluster=eu\nreplica=a"));
    let Ok(config) = RelabelConfig::parse(yaml) else {
        return;
    };
    let input = labels(label_text);
    let output = config.process(input.clone());
    assert_eq!(
        config.process(input.clone()),
        output,
        "relabelling is not deterministic"
    );
    if config.is_empty() {
        assert_eq!(output, Some(input));
    }
});
