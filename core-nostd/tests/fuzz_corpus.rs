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

#[test]
fn the_secure_server_corpus_passes_its_checks() {
    assert!(replay("secure_server", checks::secure_server) > 0, "the corpus is there");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The secure_server target's checks over random inputs of each shape,
    /// so CI runs them without nightly.
    #[test]
    fn the_secure_server_checks_hold_for_random_input(
        ctl in 0u8..=255,
        body in proptest::collection::vec(0u8..=255, 0..600),
    ) {
        let mut data = vec![ctl];
        data.extend_from_slice(&body);
        checks::secure_server(&data);
    }
}
