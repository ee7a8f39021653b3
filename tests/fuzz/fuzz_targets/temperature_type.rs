//! Fuzz target: temperature_type — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::thermometer;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = thermometer::decode_type(data) {
        let bytes = thermometer::encode_type(value);
        assert_eq!(thermometer::decode_type(&bytes), Ok(value));
    }
});
