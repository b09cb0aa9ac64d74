//! Error output through the real binary: `error: …` says what went wrong once, and a
//! `caused by:` line appears only for what the lines above do not already say.

mod common;

use common::cqr_in;

#[test]
fn a_missing_data_file_is_named_once_with_its_os_error() {
    let work = tempfile::tempdir().unwrap();
    let out = cqr_in(work.path())
        .args(["train", "nope.csv", "-o", "m", "--components", "linear"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "error: nope.csv: No such file or directory (os error 2)\n"
    );
}
