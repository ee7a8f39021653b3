//! Fuzz target: blood_pressure — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::blood_pressure;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = blood_pressure::decode(data) {
        let bytes = blood_pressure::encode(&value).expect("decoded values re-encode");
        assert_eq!(blood_pressure::decode(&bytes), Ok(value));
    }
});
