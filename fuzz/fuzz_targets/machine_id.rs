//! Machine-id validation (`dasher_server::http::machine_id::parse_machine_id`), the URL path
//! segment of every sync request. An accepted id is non-empty, within the byte limit, made of the
//! documented characters only, never contains `..`, is no reserved name, and is a fixed point of validation.
#![no_main]

use dasher_server::http::machine_id::parse_machine_id;
use libfuzzer_sys::fuzz_target;

const MAX_MACHINE_ID_BYTES: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(id) = parse_machine_id(raw, MAX_MACHINE_ID_BYTES) else { return };
    let id = id.to_string();
    assert!(!id.is_empty());
    assert!(id.len() <= MAX_MACHINE_ID_BYTES, "{} bytes", id.len());
    assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-:@+~".contains(&b)), "{id:?}");
    assert!(!id.contains(".."), "{id:?}");
    assert!(id != "global" && id != "." && !id.starts_with("host:"), "{id:?}");
    assert_eq!(parse_machine_id(&id, MAX_MACHINE_ID_BYTES).map(|m| m.to_string()), Ok(id.clone()));
});
