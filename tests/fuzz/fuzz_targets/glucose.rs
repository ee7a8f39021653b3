//! Fuzz target: glucose — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::glucose;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = glucose::decode(data) {
        let bytes = glucose::encode(&value).expect("decoded values re-encode");
        assert_eq!(glucose::decode(&bytes), Ok(value));
    }
});
