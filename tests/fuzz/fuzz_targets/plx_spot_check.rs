//! Fuzz target: plx_spot_check — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::plx;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = plx::decode_spot_check(data) {
        let bytes = plx::encode_spot_check(&value).expect("decoded values re-encode");
        assert_eq!(plx::decode_spot_check(&bytes), Ok(value));
    }
});
