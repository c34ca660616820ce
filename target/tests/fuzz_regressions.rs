//! Inputs the coverage-guided fuzz targets (fuzz/, see docs/fuzzing.md) found that broke an
//! invariant, one test each: the input as found (minimised) and the behaviour now asserted.

use vfnvme_target::config::{Config, ConfigError};

/// `config` target: a control character in a comment. toml reports it with an empty message,
/// which left the user with `file:line: ` and nothing else.
#[test]
fn control_character_in_a_comment_is_named() {
    let text = "[target]\n# vfn\u{1a}me\ncores = 2\n";
    let error = Config::parse(text, "vfnvme.toml").unwrap_err();
    let ConfigError::Invalid { line, reason, .. } = &error else {
        panic!("expected an error at a line, got {error:?}");
    };
    assert_eq!(*line, 2);
    assert_eq!(reason, "character '\\u{1a}' is not allowed here");
    assert_eq!(
        error.to_string(),
        "vfnvme.toml:2: character '\\u{1a}' is not allowed here"
    );
}
