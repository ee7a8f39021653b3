//! Fuzz target: weight_scale_feature — never panics; whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::weight;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = weight::decode_feature(data) {
        let bytes = weight::encode_feature(&value).expect("decoded values re-encode");
        assert_eq!(weight::decode_feature(&bytes), Ok(value));
    }
});
