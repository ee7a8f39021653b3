//! Fuzz target: plx_features — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::plx;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = plx::decode_features(data) {
        let bytes = plx::encode_features(&value).expect("decoded values re-encode");
        assert_eq!(plx::decode_features(&bytes), Ok(value));
    }
});
