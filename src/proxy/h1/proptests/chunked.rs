//! A chunked body decodes to its data and stops at its end however it is split; wakeway's own
//! encoding decodes back to the data.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::proxy::h1::chunked::{Decoder, LAST_CHUNK, encode_chunk};

/// One chunk's size line: hex in either case, with leading zeros and extensions.
fn size_line(n: usize, upper: bool, zeros: usize, ext: &str) -> Vec<u8> {
    let hex = if upper {
        format!("{n:X}")
    } else {
        format!("{n:x}")
    };
    format!("{}{hex}{ext}\r\n", "0".repeat(zeros)).into_bytes()
}

fn extension() -> impl Strategy<Value = String> {
    "(;[a-z]{1,5}(=[a-z0-9\"]{0,6})?){0,2}"
}

/// (data, a valid chunked encoding of it in any of the forms a client may send)
fn chunked_body() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    (
        vec(
            (
                vec(any::<u8>(), 1..300),
                any::<bool>(),
                0usize..5,
                extension(),
            ),
            0..8,
        ),
        1usize..5,
        extension(),
        vec("[A-Za-z-]{1,10}:[ -~]{0,20}", 0..3),
    )
        .prop_map(|(chunks, last_zeros, last_ext, trailers)| {
            let mut data = Vec::new();
            let mut enc = Vec::new();
            for (bytes, upper, zeros, ext) in chunks {
                enc.extend(size_line(bytes.len(), upper, zeros, &ext));
                enc.extend_from_slice(&bytes);
                enc.extend_from_slice(b"\r\n");
                data.extend(bytes);
            }
            enc.extend(format!("{}{last_ext}\r\n", "0".repeat(last_zeros)).into_bytes());
            for t in trailers {
                enc.extend(format!("{t}\r\n").into_bytes());
            }
            enc.extend_from_slice(b"\r\n");
            (data, enc)
        })
}

/// `input` cut at `cuts`.
fn pieces<'a>(input: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
    at.push(0);
    at.push(input.len());
    at.sort_unstable();
    at.windows(2).map(|w| &input[w[0]..w[1]]).collect()
}

/// What a decoder made of `input` fed in `pieces`: the data, bytes consumed, and how it ended.
fn decode_in(pieces: &[&[u8]]) -> (Vec<u8>, usize, Result<bool, String>) {
    let mut d = Decoder::default();
    let mut data = Vec::new();
    let mut used = 0;
    for p in pieces {
        match d.decode(p, |b| data.extend_from_slice(b)) {
            Ok(n) => {
                assert!(n <= p.len(), "consumed more than it was given");
                assert!(
                    n == p.len() || d.is_done(),
                    "stopped early without finishing the body"
                );
                used += n;
            }
            Err(e) => return (data, used, Err(e.0.to_string())),
        }
    }
    (data, used, Ok(d.is_done()))
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn chunked_decodes_to_the_data_and_stops_at_its_end(
        (data, enc) in chunked_body(),
        tail in vec(any::<u8>(), 0..32),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let input = [enc.clone(), tail].concat();
        // All of the data, and not a byte past the body's end.
        prop_assert_eq!(decode_in(&pieces(&input, &cuts)), (data, enc.len(), Ok(true)));
    }

    #[test]
    fn chunked_is_done_only_at_the_last_byte(
        (_, enc) in chunked_body(),
        cut: Index,
    ) {
        let end = cut.index(enc.len());
        let mut d = Decoder::default();
        prop_assert_eq!(d.decode(&enc[..end], |_| {}), Ok(end));
        prop_assert!(!d.is_done());
    }

    #[test]
    fn reencoding_then_decoding_is_identity(
        data in vec(any::<u8>(), 0..3000),
        splits in vec(any::<Index>(), 0..10),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let mut enc = Vec::new();
        for piece in pieces(&data, &splits) {
            encode_chunk(&mut enc, piece);
        }
        enc.extend_from_slice(LAST_CHUNK);
        let whole = (data, enc.len(), Ok(true));
        prop_assert_eq!(decode_in(&pieces(&enc, &cuts)), whole);
    }

    #[test]
    fn chunked_reads_the_same_however_it_is_split(
        (_, enc) in chunked_body(),
        damage in vec((any::<Index>(), any::<u8>()), 0..3),
        cuts in vec(any::<Index>(), 1..8),
    ) {
        let mut input = enc;
        for (at, byte) in damage {
            if !input.is_empty() {
                let i = at.index(input.len());
                input[i] = byte;
            }
        }
        let whole = decode_in(&[&input]);
        let split = decode_in(&pieces(&input, &cuts));
        prop_assert_eq!(&whole.0, &split.0);
        prop_assert_eq!(&whole.2, &split.2);
        if whole.2.is_ok() {
            prop_assert_eq!(whole.1, split.1);
        }
    }
}
