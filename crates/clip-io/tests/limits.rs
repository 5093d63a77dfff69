//! Size limits, in their own process (the limit is process-wide).

use clip_io::{limit, read_input, set_limit, Input};

#[test]
fn inputs_over_the_limit_are_refused_with_the_way_to_raise_it() {
    let dir = std::env::temp_dir().join(format!("clip-io-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("captions.txt");
    std::fs::write(&path, "0123456789A").unwrap();
    set_limit(Input::Text, 10).unwrap();
    assert_eq!(limit(Input::Text), 10);
    let err = read_input(&path, Input::Text).unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "cannot read text file {}: it is larger than the limit of 10 bytes (set CLIP_MAX_TEXT_BYTES to raise it)",
            path.display()
        )
    );
    std::fs::write(&path, "0123456789").unwrap();
    assert_eq!(read_input(&path, Input::Text).unwrap().len(), 10);
}
