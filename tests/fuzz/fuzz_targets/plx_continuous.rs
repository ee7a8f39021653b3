//! Fuzz target: plx_continuous — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::plx;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = plx::decode_continuous(data) {
        let bytes = plx::encode_continuous(&value).expect("decoded values re-encode");
        assert_eq!(plx::decode_continuous(&bytes), Ok(value));
    }
});
