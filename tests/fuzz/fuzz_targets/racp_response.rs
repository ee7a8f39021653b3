//! Fuzz target: racp_response — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::racp;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = racp::decode_response(data) {
        let bytes = racp::encode_response(&value);
        assert_eq!(racp::decode_response(&bytes), Ok(value));
    }
});
