//! The tolerant JSON parsers of every request stage (`WireMessage::decode_from` with
//! `Format::Json`: XSSI prefixes, aliases, lenient numbers/booleans/enums). Every request the
//! parser accepts must also be emitted by the strict side and read back, in both formats.
#![no_main]

use dasher_fuzz::check_stage;
use dasher_sdk::wire::{EventUploadRequest, Format, PostflightRequest, PreflightRequest, RuleDownloadRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_stage::<PreflightRequest>(data, Format::Json);
    check_stage::<EventUploadRequest>(data, Format::Json);
    check_stage::<RuleDownloadRequest>(data, Format::Json);
    check_stage::<PostflightRequest>(data, Format::Json);
});
