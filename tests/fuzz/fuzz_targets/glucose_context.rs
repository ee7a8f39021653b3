//! Fuzz target: glucose_context — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::glucose;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = glucose::decode_context(data) {
        let bytes = glucose::encode_context(&value).expect("decoded values re-encode");
        assert_eq!(glucose::decode_context(&bytes), Ok(value));
    }
});
