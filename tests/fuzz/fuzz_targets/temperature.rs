//! Fuzz target: temperature — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::thermometer;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = thermometer::decode(data) {
        let bytes = thermometer::encode(&value).expect("decoded values re-encode");
        assert_eq!(thermometer::decode(&bytes), Ok(value));
    }
});
