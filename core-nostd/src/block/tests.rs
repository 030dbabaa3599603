//! Byte vectors of every block-framed form, fed split at every byte.

use std::vec::Vec;

use super::*;

/// The header block its Python client sends: user 42, version 1, `op`, and
/// for a named op the big-endian `name_len` and the name.
fn request_block(op: u8, name: &[u8], big_endian: bool) -> Vec<u8> {
    let mut b = std::vec![0u8; BLOCK_LEN];
    b[..4].copy_from_slice(&42u32.to_le_bytes());
    b[4] = 1;
    b[5] = op;
    if !name.is_empty() {
        let len = name.len() as u16;
        let field = if big_endian { len.to_be_bytes() } else { len.to_le_bytes() };
        b[6..8].copy_from_slice(&field);
        b[8..8 + name.len()].copy_from_slice(name);
    }
    b
}

/// Its data blocks: size and up to 1020 bytes, then 1024-byte blocks, zero padded.
fn data_blocks(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let first = data.len().min(FIRST_DATA_LEN);
    let mut block = std::vec![0u8; BLOCK_LEN];
    block[..4].copy_from_slice(&(data.len() as u32).to_le_bytes());
    block[4..4 + first].copy_from_slice(&data[..first]);
    out.extend_from_slice(&block);
    for chunk in data[first..].chunks(BLOCK_LEN) {
        let mut block = std::vec![0u8; BLOCK_LEN];
        block[..chunk.len()].copy_from_slice(chunk);
        out.extend_from_slice(&block);
    }
    out
}

/// Feeds `input` to a fresh unblocker cut at `split`, in small output
/// windows; returns the stream bytes, the bytes consumed and the end.
fn unblock(input: &[u8], split: usize) -> Result<(Vec<u8>, usize, BlockEnd), BlockError> {
    let mut u = RequestUnblocker::new();
    let mut out = Vec::new();
    let mut consumed = 0;
    for part in [&input[..split], &input[split..]] {
        let mut at = 0;
        loop {
            let mut window = [0u8; 7];
            let (used, made) = u.feed(&part[at..], &mut window)?;
            at += used;
            consumed += used;
            out.extend_from_slice(&window[..made]);
            if used == 0 && made == 0 {
                break;
            }
        }
    }
    Ok((out, consumed, u.finish()))
}

fn every_split(input: &[u8], expected: &[u8], consumed: usize) {
    for split in 0..=input.len() {
        let (out, used, end) = unblock(input, split).unwrap();
        assert_eq!(out, expected, "split at {split}");
        assert_eq!(used, consumed, "split at {split}");
        assert_eq!(end, BlockEnd::Complete);
    }
}

#[test]
fn list_header_block_becomes_the_six_byte_list_request() {
    every_split(&request_block(202, b"", true), &[0x2a, 0, 0, 0, 1, 0xca], BLOCK_LEN);
}

#[test]
fn restore_and_delete_with_big_endian_name_len_become_stream_requests() {
    for op in [200u8, 201] {
        let expected = [&[0x2a, 0, 0, 0, 1, op, 5, 0][..], b"a.bin"].concat();
        every_split(&request_block(op, b"a.bin", true), &expected, BLOCK_LEN);
    }
}

#[test]
fn a_little_endian_name_len_is_taken_when_it_alone_is_valid() {
    let expected = [&[0x2a, 0, 0, 0, 1, 200, 5, 0][..], b"a.bin"].concat();
    every_split(&request_block(200, b"a.bin", false), &expected, BLOCK_LEN);
    assert_eq!(request_name_len([0x00, 0x05]), Ok(5));
    assert_eq!(request_name_len([0x05, 0x00]), Ok(5));
    assert_eq!(request_name_len([0xff, 0x00]), Ok(255));
}

#[test]
fn backups_of_every_block_boundary_size_become_stream_backups() {
    for size in [0usize, 1, 3, 1019, 1020, 1021, 1024, 2044, 2045] {
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8 + 1).collect();
        let input = [request_block(100, b"a.bin", true), data_blocks(&data)].concat();
        let expected =
            [&[0x2a, 0, 0, 0, 1, 100, 5, 0][..], b"a.bin", &(size as u32).to_le_bytes(), &data].concat();
        // Padding after the data is never consumed.
        let consumed = BLOCK_LEN + SIZE_LEN + size;
        if size <= 3 || size == 1021 {
            every_split(&input, &expected, consumed);
        } else {
            for split in [0, 1, 1023, 1024, 1027, 1028, input.len() - 1, input.len()] {
                let (out, used, _) = unblock(&input, split).unwrap();
                assert_eq!(out, expected, "size {size} split {split}");
                assert_eq!(used, consumed);
            }
        }
    }
}

#[test]
fn name_lengths_invalid_either_way_are_refused() {
    for field in [[0u8, 0], [1, 1], [0x01, 0x2c], [0xff, 0xff]] {
        let mut block = request_block(200, b"a.bin", true);
        block[6..8].copy_from_slice(&field);
        let err = unblock(&block, 3).unwrap_err();
        assert!(matches!(err, BlockError::NameLength { .. }), "{field:?}: {err:?}");
    }
}

#[test]
fn a_byte_after_the_name_is_refused_as_padding() {
    // Its client counts characters: "éa" is 2 long but 3 bytes.
    let mut block = request_block(200, b"\xc3\xa9", true);
    block[10] = b'a';
    assert_eq!(unblock(&block, 0).unwrap_err(), BlockError::Padding { offset: 10 });
}

#[test]
fn op_zero_is_no_request() {
    assert_eq!(unblock(&[0u8; BLOCK_LEN], 0).unwrap_err(), BlockError::NoOp);
}

#[test]
fn short_blocks_end_cut_short() {
    let block = request_block(200, b"a.bin", true);
    for len in [1, 6, 13, 1023] {
        let (out, _, end) = unblock(&block[..len], 0).unwrap();
        assert!(out.is_empty());
        assert_eq!(end, BlockEnd::CutShort, "{len}");
    }
    let cut = [request_block(100, b"a.bin", true), std::vec![9, 0]].concat();
    assert_eq!(unblock(&cut, 0).unwrap().2, BlockEnd::CutShort);
    assert_eq!(unblock(&[], 0).unwrap().2, BlockEnd::Nothing);
}

/// Pushes a stream response through a blocker cut at `split`; returns the
/// blocks as written.
fn block_response(stream: &[u8], split: usize) -> Vec<Vec<u8>> {
    let mut b = ResponseBlocker::new();
    let mut blocks = Vec::new();
    for part in [&stream[..split], &stream[split..]] {
        let mut at = 0;
        while at < part.len() {
            at += b.push(&part[at..]).unwrap();
            if let Some(block) = b.ready() {
                blocks.push(block.to_vec());
                b.sent();
            }
        }
    }
    while let Some(block) = b.ready() {
        blocks.push(block.to_vec());
        b.sent();
    }
    assert!(b.is_complete());
    blocks
}

fn header_block(fields: &[u8]) -> Vec<u8> {
    let mut b = std::vec![0u8; BLOCK_LEN];
    b[..fields.len()].copy_from_slice(fields);
    b
}

fn blocks_every_split(stream: &[u8], expected: &[Vec<u8>]) {
    for split in 0..=stream.len() {
        assert_eq!(block_response(stream, split), expected, "split at {split}");
    }
}

#[test]
fn named_answers_are_one_header_block() {
    for status in [212u16, 1001] {
        let s = status.to_le_bytes();
        let stream = [&[1, s[0], s[1], 5, 0][..], b"a.bin", &[0, 0, 0, 0]].concat();
        let expected = [header_block(&[&[1, s[0], s[1], 5, 0][..], b"a.bin"].concat())];
        blocks_every_split(&stream, &expected);
    }
}

#[test]
fn no_files_is_version_and_status_alone() {
    blocks_every_split(&[1, 0xea, 3, 0, 0, 0, 0, 0, 0], &[header_block(&[1, 0xea, 3])]);
}

#[test]
fn an_error_carries_its_reason_after_the_header_block() {
    let stream = [&[1, 0xeb, 3, 0, 0, 3, 0, 0, 0][..], b"bad"].concat();
    let expected = [header_block(&[1, 0xeb, 3]), [&[3, 0, 0, 0][..], b"bad"].concat()];
    blocks_every_split(&stream, &expected);
}

#[test]
fn a_list_is_its_header_block_then_size_and_names_unpadded() {
    let stream = [&[1, 0xd3, 0, 0, 0, 8, 0, 0, 0][..], b"a.bin\nb\n"].concat();
    let expected = [header_block(&[1, 0xd3, 0]), [&[8, 0, 0, 0][..], b"a.bin\nb\n"].concat()];
    blocks_every_split(&stream, &expected);
}

#[test]
fn restores_are_cut_in_1024_byte_writes_the_last_unpadded() {
    for size in [0usize, 1, 1019, 1020, 1021, 1024, 3000] {
        let data: Vec<u8> = (0..size).map(|i| (i % 7) as u8).collect();
        let stream = [&[1, 0xd2, 0, 5, 0][..], b"a.bin", &(size as u32).to_le_bytes(), &data].concat();
        let part = [&(size as u32).to_le_bytes()[..], &data].concat();
        let mut expected = std::vec![header_block(&[&[1, 0xd2, 0, 5, 0][..], b"a.bin"].concat())];
        expected.extend(part.chunks(BLOCK_LEN).map(<[u8]>::to_vec));
        if size <= 1 {
            blocks_every_split(&stream, &expected);
        } else {
            for split in [0, 5, 10, 14, stream.len() - 1, stream.len()] {
                assert_eq!(block_response(&stream, split), expected, "size {size} split {split}");
            }
        }
    }
}

/// Pushes a stream request through a request blocker; returns the blocks.
fn block_request(stream: &[u8], split: usize) -> Vec<Vec<u8>> {
    let mut b = RequestBlocker::new();
    let mut blocks = Vec::new();
    for part in [&stream[..split], &stream[split..]] {
        let mut at = 0;
        while at < part.len() {
            at += b.push(&part[at..]).unwrap();
            while let Some(block) = b.ready() {
                blocks.push(block.to_vec());
                b.sent();
            }
        }
    }
    assert!(b.is_complete());
    blocks
}

#[test]
fn our_requests_become_blocks_its_server_reads_exactly() {
    let le_block = |op: u8| {
        let mut b = request_block(op, b"a.bin", false);
        b[4] = 2;
        b
    };
    for op in [200u8, 201] {
        let stream = [&[0x2a, 0, 0, 0, 2, op, 5, 0][..], b"a.bin"].concat();
        for split in 0..=stream.len() {
            assert_eq!(block_request(&stream, split), [le_block(op)], "op {op} split {split}");
        }
    }
    let list = [0x2a, 0, 0, 0, 2, 0xca];
    let mut list_block = request_block(202, b"", true);
    list_block[4] = 2;
    for split in 0..=list.len() {
        assert_eq!(block_request(&list, split), [list_block.clone()]);
    }
    for size in [0usize, 1, 1019, 1020, 1021, 1024, 2044, 2045] {
        let data: Vec<u8> = (0..size).map(|i| (i % 13) as u8 + 1).collect();
        let stream =
            [&[0x2a, 0, 0, 0, 2, 100, 5, 0][..], b"a.bin", &(size as u32).to_le_bytes(), &data].concat();
        let part = [&(size as u32).to_le_bytes()[..], &data].concat();
        let mut expected = std::vec![le_block(100)];
        let mut first = std::vec![0u8; BLOCK_LEN];
        let n = part.len().min(BLOCK_LEN);
        first[..n].copy_from_slice(&part[..n]);
        expected.push(first);
        expected.extend(part[n..].chunks(BLOCK_LEN).map(<[u8]>::to_vec));
        let splits: Vec<usize> =
            if size <= 1 { (0..=stream.len()).collect() } else { std::vec![0, 7, 13, 14, 17, stream.len()] };
        for split in splits {
            assert_eq!(block_request(&stream, split), expected, "size {size} split {split}");
        }
    }
}

fn unblock_response(input: &[u8], split: usize, eof: bool) -> Result<Vec<u8>, BlockError> {
    let mut u = ResponseUnblocker::new();
    let mut out = Vec::new();
    for part in [&input[..split], &input[split..]] {
        let mut at = 0;
        loop {
            let mut window = [0u8; 5];
            let (used, made) = u.feed(&part[at..], &mut window)?;
            at += used;
            out.extend_from_slice(&window[..made]);
            if used == 0 && made == 0 {
                break;
            }
        }
    }
    if eof && u.input_ended() == BlockEnd::Complete {
        loop {
            let mut window = [0u8; 5];
            let (_, made) = u.feed(&[], &mut window)?;
            if made == 0 {
                break;
            }
            out.extend_from_slice(&window[..made]);
        }
    }
    assert!(u.is_complete(), "incomplete: {out:?}");
    Ok(out)
}

#[test]
fn its_server_responses_become_version_1_stream_responses() {
    let named = |status: u16| {
        let s = status.to_le_bytes();
        header_block(&[&[1, s[0], s[1], 5, 0][..], b"a.bin"].concat())
    };
    // 212 and 1001: the header block alone, then its server closes.
    for status in [212u16, 1001] {
        let s = status.to_le_bytes();
        let expected = [&[1, s[0], s[1], 5, 0][..], b"a.bin", &[0, 0, 0, 0]].concat();
        for split in 0..=BLOCK_LEN {
            assert_eq!(unblock_response(&named(status), split, false).unwrap(), expected);
        }
    }
    // 1002 and a 1003 without a reason: version and status alone.
    for (block, expected) in [
        (header_block(&[1, 0xea, 3]), std::vec![1, 0xea, 3, 0, 0, 0, 0, 0, 0]),
        (header_block(&[1, 0xeb, 3]), std::vec![1, 0xeb, 3, 0, 0, 0, 0, 0, 0]),
    ] {
        assert_eq!(unblock_response(&block, 500, true).unwrap(), expected);
    }
    // An empty restore from its server: no size block at all.
    let expected = [&[1, 0xd2, 0, 5, 0][..], b"a.bin", &[0, 0, 0, 0]].concat();
    assert_eq!(unblock_response(&named(210), 3, true).unwrap(), expected);
    // A restore padded to 1024 and followed by a spare zero block.
    let mut first = std::vec![0u8; BLOCK_LEN];
    first[..7].copy_from_slice(&[3, 0, 0, 0, b'a', b'b', b'c']);
    let input = [named(210), first, std::vec![0u8; BLOCK_LEN]].concat();
    let expected = [&[1, 0xd2, 0, 5, 0][..], b"a.bin", &[3, 0, 0, 0], b"abc"].concat();
    for split in 0..=BLOCK_LEN + 8 {
        assert_eq!(unblock_response(&input, split, false).unwrap(), expected, "split {split}");
    }
    // A list, and ours answering with version 2 still reads as version 1.
    let mut list = header_block(&[2, 0xd3, 0]);
    list.extend_from_slice(&[2, 0, 0, 0, b'b', b'\n']);
    assert_eq!(unblock_response(&list, 1024, false).unwrap(), [1, 0xd3, 0, 0, 0, 2, 0, 0, 0, b'b', b'\n']);
    let mut bad = named(212);
    bad[3..5].copy_from_slice(&[0, 1]);
    assert_eq!(unblock_response(&bad, 0, false).unwrap_err(), BlockError::ResponseNameLength(256));
}

/// A fixed-seed generator: the same hostile inputs on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) as usize
    }

    /// Mostly zeros and small values, where the fields' edges are.
    fn byte(&mut self) -> u8 {
        match self.next() % 4 {
            0 | 1 => 0,
            2 => (self.next() % 3) as u8,
            _ => self.next() as u8,
        }
    }

    fn bytes(&mut self, header: &[u8]) -> Vec<u8> {
        let mut v = header.to_vec();
        for _ in 0..self.next() % (3 * BLOCK_LEN) {
            v.push(self.byte());
        }
        v
    }
}

#[test]
fn hostile_bytes_in_any_pieces_never_panic_and_never_grow_the_output() {
    let mut rng = Lcg(15);
    for _ in 0..3000 {
        let prefix =
            [&[rng.byte(), 0, 0, 0, (rng.next() % 4) as u8][..], &[[100, 200, 201, 202, 7][rng.next() % 5]]];
        let input = rng.bytes(&prefix.concat());
        // Server direction: a request block; the stream bytes never exceed the input's.
        let mut u = RequestUnblocker::new();
        let (mut at, mut made) = (0, 0);
        while at < input.len() {
            let piece = (rng.next() % 300 + 1).min(input.len() - at);
            let mut out = std::vec![0u8; rng.next() % 40];
            match u.feed(&input[at..at + piece], &mut out) {
                Ok((0, 0)) if out.is_empty() => continue,
                Ok((0, 0)) => break,
                Ok((used, n)) => {
                    at += used;
                    made += n;
                }
                Err(_) => break,
            }
        }
        assert!(made <= input.len(), "{made} stream bytes from {}", input.len());
        let _ = u.finish();
        // Client direction: a response block.
        let mut r = ResponseUnblocker::new();
        let mut at = 0;
        while at < input.len() {
            let piece = (rng.next() % 300 + 1).min(input.len() - at);
            let mut out = std::vec![0u8; rng.next() % 40 + 1];
            match r.feed(&input[at..at + piece], &mut out) {
                Ok((0, 0)) => break,
                Ok((used, _)) => at += used,
                Err(_) => break,
            }
        }
        let _ = r.input_ended();
        // Stream bytes into both blockers: they refuse or block, never panic.
        let mut rb = ResponseBlocker::new();
        let mut qb = RequestBlocker::new();
        let (mut a, mut b) = (Ok(0), Ok(0));
        let (mut at_a, mut at_b) = (0, 0);
        for _ in 0..input.len() + 4 {
            if let Ok(n) = a {
                at_a += n;
                a = rb.push(&input[at_a.min(input.len())..]);
                if rb.ready().is_some() {
                    rb.sent();
                }
            }
            if let Ok(n) = b {
                at_b += n;
                b = qb.push(&input[at_b.min(input.len())..]);
                if qb.ready().is_some() {
                    qb.sent();
                }
            }
        }
    }
}
