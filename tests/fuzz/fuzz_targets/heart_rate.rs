//! Fuzz target: heart_rate — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::heart_rate;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = heart_rate::decode(data) {
        let bytes = heart_rate::encode(&value).expect("decoded values re-encode");
        assert_eq!(heart_rate::decode(&bytes), Ok(value));
    }
});
