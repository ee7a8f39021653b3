//! Fuzz target: weight — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::weight;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = weight::decode(data) {
        let bytes = weight::encode(&value).expect("decoded values re-encode");
        assert_eq!(weight::decode(&bytes), Ok(value));
    }
});
