//! Fuzz target: racp_request — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::racp;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = racp::decode_request(data) {
        let bytes = racp::encode_request(&value).expect("decoded values re-encode");
        assert_eq!(racp::decode_request(&bytes), Ok(value));
    }
});
