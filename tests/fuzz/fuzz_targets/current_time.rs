//! Fuzz target: current_time — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::clock;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = clock::decode_current_time(data) {
        let bytes = clock::encode_current_time(&value);
        assert_eq!(clock::decode_current_time(&bytes), Ok(value));
    }
});
