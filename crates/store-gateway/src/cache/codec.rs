//! Value encodings of index cache items, as Thanos' store gateway stores them so a shared
//! memcached / redis can serve both:
//!
//! * postings lists and expanded postings: the header `dss` then a snappy *framed* stream of
//!   the uvarint deltas between consecutive series references (index references, before the
//!   ×16 of index v2). Read are also `dvs` (the older header, one snappy block of the same
//!   deltas) and an unencoded list (`u32 BE count | u32 BE references`), which Thanos accepts too.
//! * series: the series entry's body as stored in the index, without its uvarint length and
//!   without its CRC32.

use std::io::{Read, Write};

use bytes::Bytes;

/// Header of postings in diff+varint+streamed-snappy encoding (what Thanos writes).
pub(crate) const STREAMED_SNAPPY: &[u8] = b"dss";
/// Header of postings in diff+varint+snappy block encoding (older Thanos).
pub(crate) const BLOCK_SNAPPY: &[u8] = b"dvs";

fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads the uvarint deltas of `bytes` back into references; `None` when a varint is cut or
/// the sum overflows.
fn undelta(bytes: &[u8]) -> Option<Vec<u64>> {
    let mut refs = Vec::with_capacity(bytes.len());
    let mut current = 0u64;
    let mut position = 0;
    while position < bytes.len() {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let byte = *bytes.get(position)?;
            position += 1;
            if shift >= 64 {
                return None;
            }
            value |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                break;
            }
            shift += 7;
        }
        current = current.checked_add(value)?;
        refs.push(current);
    }
    Some(refs)
}

/// Encodes sorted series references as Thanos caches postings: `dss` + snappy stream of
/// uvarint deltas. `None` when `refs` is not sorted.
pub(crate) fn encode_postings(refs: &[u64]) -> Option<Bytes> {
    let mut deltas = Vec::with_capacity(refs.len() + refs.len() / 4);
    let mut previous = 0u64;
    for reference in refs {
        let delta = reference.checked_sub(previous)?;
        put_uvarint(&mut deltas, delta);
        previous = *reference;
    }
    let mut out = STREAMED_SNAPPY.to_vec();
    let mut encoder = snap::write::FrameEncoder::new(&mut out);
    encoder.write_all(&deltas).ok()?;
    encoder.flush().ok()?;
    drop(encoder);
    Some(Bytes::from(out))
}

/// Decodes a cached postings value in any of the encodings Thanos reads; `None` when it is
/// none of them (the caller treats that as a miss).
pub(crate) fn decode_postings(value: &[u8]) -> Option<Vec<u64>> {
    if let Some(stream) = value.strip_prefix(STREAMED_SNAPPY) {
        let mut deltas = Vec::new();
        snap::read::FrameDecoder::new(stream)
            .read_to_end(&mut deltas)
            .ok()?;
        return undelta(&deltas);
    }
    if let Some(block) = value.strip_prefix(BLOCK_SNAPPY) {
        let deltas = snap::raw::Decoder::new().decompress_vec(block).ok()?;
        return undelta(&deltas);
    }
    let (count, rest) = value.split_first_chunk::<4>()?;
    let count = u32::from_be_bytes(*count) as usize;
    let list = rest.get(..count.checked_mul(4)?)?;
    Some(
        list.chunks_exact(4)
            .map(|chunk| u64::from(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])))
            .collect(),
    )
}

/// Whether Go's `unicode.IsPrint` holds for a non-ASCII character, approximated without
/// Unicode category tables: control, separator (other than the ASCII space) and the common
/// format characters are not printable; everything else is.
fn go_is_print(c: char) -> bool {
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(
        u32::from(c),
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xE000..=0xF8FF
            | 0xFEFF
            | 0xFFF9..=0xFFFB
    )
}

/// `text` as Go's `strconv.Quote` prints it (exact for ASCII; see [`go_is_print`]).
pub(crate) fn go_quote(text: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            '\u{07}' => out.push_str("\\a"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{0B}' => out.push_str("\\v"),
            '\0'..='\u{1F}' | '\u{7F}' => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if go_is_print(c) => out.push(c),
            c if u32::from(c) < 0x10000 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => {
                let _ = write!(out, "\\U{:08x}", u32::from(c));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postings_round_trip_in_the_streamed_snappy_format() {
        for refs in [
            vec![],
            vec![0],
            vec![1, 2, 3, 300, 70_000, u64::from(u32::MAX)],
            (0..50_000u64).map(|i| i * 7 + 3).collect::<Vec<_>>(),
        ] {
            let encoded = encode_postings(&refs).unwrap();
            assert_eq!(&encoded[..3], b"dss");
            // The snappy stream identifier chunk follows the header.
            if !refs.is_empty() {
                assert_eq!(&encoded[3..13], b"\xff\x06\x00\x00sNaPpY");
            }
            assert_eq!(decode_postings(&encoded).unwrap(), refs);
        }
        assert!(encode_postings(&[5, 4]).is_none());
    }

    #[test]
    fn decodes_hand_built_dss_dvs_and_raw_values() {
        // refs 1, 3, 200 → deltas 1, 2, 197 → uvarints 01 02 c5 01.
        let deltas = [0x01u8, 0x02, 0xc5, 0x01];
        // A snappy framed stream with one uncompressed chunk (type 0x01): length 3 + 4 + 1
        // bytes, the masked CRC-32C of the data, then the data.
        let crc = tsdb_block::encoding::crc32c(&deltas);
        let masked = crc.rotate_right(15).wrapping_add(0xa282_ead8);
        let mut dss = b"dss\xff\x06\x00\x00sNaPpY\x01\x08\x00\x00".to_vec();
        dss.extend_from_slice(&masked.to_le_bytes());
        dss.extend_from_slice(&deltas);
        assert_eq!(decode_postings(&dss).unwrap(), vec![1, 3, 200]);
        // A raw snappy block: uvarint length 4, literal tag (len-1)<<2, the bytes.
        let mut dvs = b"dvs\x04\x0c".to_vec();
        dvs.extend_from_slice(&deltas);
        assert_eq!(decode_postings(&dvs).unwrap(), vec![1, 3, 200]);
        let raw = [0, 0, 0, 2, 0, 0, 0, 9, 0, 0, 1, 0];
        assert_eq!(decode_postings(&raw).unwrap(), vec![9, 256]);
        assert!(decode_postings(&[0, 0, 0, 3, 0, 0, 0, 1]).is_none());
        assert!(decode_postings(b"dss garbage").is_none());
    }

    #[test]
    fn quotes_like_go_strconv_quote() {
        assert_eq!(go_quote("abc"), "\"abc\"");
        assert_eq!(go_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(go_quote("\n\t\u{7}\u{1}\u{7f}"), "\"\\n\\t\\a\\x01\\x7f\"");
        assert_eq!(go_quote("é✓"), "\"é✓\"");
        assert_eq!(go_quote("\u{200b}\u{a0}"), "\"\\u200b\\u00a0\"");
    }
}
