//! Rule-download cursors (`dasher_server::sync::cursor::CursorSigner::decode`): the raw string as
//! a client may echo it (which must fail the signature check unless it is well-formed and signed),
//! and the same bytes signed as a payload so the JSON inside is exercised too. A cursor that
//! decodes must re-encode to itself.
#![no_main]

use dasher_server::sync::cursor::{Cursor, CursorSigner, Position};
use libfuzzer_sys::fuzz_target;

fn check(signer: &CursorSigner, s: &str) {
    let Ok(cursor) = signer.decode(s) else { return };
    assert_eq!(cursor.v, Cursor::VERSION);
    if let Position::Full { set, .. } = cursor.pos {
        assert!(set <= cursor.sets.len(), "set index {set} past {} sets", cursor.sets.len());
    }
    let again = signer.decode(&signer.encode(&cursor)).expect("an encoded cursor decodes");
    assert_eq!(again, cursor);
}

fuzz_target!(|data: &[u8]| {
    let signer = CursorSigner::new(&[7; CursorSigner::KEY_BYTES]).expect("a 32-byte key");
    if let Ok(s) = std::str::from_utf8(data) {
        check(&signer, s);
    }
    check(&signer, &signer.seal(data));
});
