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
    let (a, b) = (serde_json::to_value(&back).unwrap(), serde_json::to_value(&normalised).unwrap());
    assert!(same(&a, &b), "JSON round trip: {}\n{a}\n{b}", String::from_utf8_lossy(&json));
}

/// Equal JSON values, floats within a relative 1e-12: serde_json's default float parser is not
/// correctly rounded (no `float_roundtrip` feature), so a double may come back one ulp off.
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::{Array, Number, Object};
    match (a, b) {
        (Number(x), Number(y)) if x.is_f64() || y.is_f64() => {
            let (x, y) = (x.as_f64().unwrap_or(f64::NAN), y.as_f64().unwrap_or(f64::NAN));
            x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs())
        }
        (Array(x), Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Object(x), Object(y)) => x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w))),
        _ => a == b,
    }
}
