//! Shared checks of the fuzz targets.

use dasher_sdk::wire::{Format, WireMessage};

/// Decodes `data` as request `T` in `format`; if the tolerant parser accepts it, the strict
/// emitter must write it in both formats and each must read back: protobuf bit for bit, JSON after
/// one normalisation (an enum number the JSON side does not know reads back as unset, like an
/// unknown enum name), after which emitting and reading is a fixed point.
pub fn check_stage<T: WireMessage + PartialEq + std::fmt::Debug>(data: &[u8], format: Format) {
    let Ok(msg) = T::decode_from(data, format) else { return };
    let proto = msg.encode_to(Format::Protobuf);
    let back = T::decode_from(&proto, Format::Protobuf).expect("emitted protobuf reads back");
    // Compared as bytes: a NaN double (protobuf can carry one) is not equal to itself.
    assert_eq!(back.encode_to(Format::Protobuf), proto, "protobuf round trip");
    let json = msg.encode_to(Format::Json);
    let normalised = T::decode_from(&json, Format::Json)
        .unwrap_or_else(|e| panic!("emitted JSON does not read back ({e}): {}", String::from_utf8_lossy(&json)));
    let json = normalised.encode_to(Format::Json);
    let back = T::decode_from(&json, Format::Json).expect("normalised JSON reads back");
    assert_eq!(back, normalised, "JSON round trip: {}", String::from_utf8_lossy(&json));
}
