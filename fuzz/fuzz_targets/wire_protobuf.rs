//! The binary protobuf parsers of every request stage (`SyncEnableProtoTransfer` clients).
//! Accepted requests must survive re-encoding in both formats.
#![no_main]

use dasher_fuzz::check_stage;
use dasher_sdk::wire::{EventUploadRequest, Format, PostflightRequest, PreflightRequest, RuleDownloadRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_stage::<PreflightRequest>(data, Format::Protobuf);
    check_stage::<EventUploadRequest>(data, Format::Protobuf);
    check_stage::<RuleDownloadRequest>(data, Format::Protobuf);
    check_stage::<PostflightRequest>(data, Format::Protobuf);
});
