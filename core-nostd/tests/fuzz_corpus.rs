//! Replays every input the fuzzers kept (their corpus) and any crash they
//! found (their artifacts) through the same checks, so what the fuzzers
//! learned guards every test run without a nightly toolchain.

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut count = 0;
    for dir in ["corpus", "artifacts"] {
        let Ok(entries) = std::fs::read_dir(base.join(dir).join(target)) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            let input = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| check(&input));
            assert!(outcome.is_ok(), "{} fails its check", path.display());
            count += 1;
        }
    }
    count
}

#[test]
fn the_request_decoder_corpus_passes_its_checks() {
    assert!(replay("request_decoder", checks::request_decoder) > 0, "the corpus is there");
}

#[test]
fn the_response_decoder_corpus_passes_its_checks() {
    assert!(replay("response_decoder", checks::response_decoder) > 0, "the corpus is there");
}

#[test]
fn the_dispatcher_corpus_passes_its_checks() {
    assert!(replay("dispatcher", checks::dispatcher) > 0, "the corpus is there");
}
