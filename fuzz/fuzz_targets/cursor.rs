//! Rule-download cursors (`dasher_server::sync::cursor::Cursor::decode`): the raw string as a
//! client may echo it, and the same bytes wrapped as a well-formed `d1.` + base64 envelope so the
//! JSON inside is exercised too. A cursor that decodes must re-encode to itself.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dasher_server::sync::cursor::{Cursor, Position};
use libfuzzer_sys::fuzz_target;

fn check(s: &str) {
    let Ok(cursor) = Cursor::decode(s) else { return };
    assert_eq!(cursor.v, 1);
    if let Position::Full { set, .. } = cursor.pos {
        assert!(set <= cursor.sets.len(), "set index {set} past {} sets", cursor.sets.len());
    }
    let again = Cursor::decode(&cursor.encode()).expect("an encoded cursor decodes");
    assert_eq!(again, cursor);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
    }
    check(&format!("d1.{}", URL_SAFE_NO_PAD.encode(data)));
});
