//! Fuzz target: cgm — several records per notification, optional E2E-CRC; never panics;
//! whatever decodes re-encodes to an equal value.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vectorcare_gateway::decode::gatt::cgm;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else { return };
    let crc_required = first & 1 != 0;
    if let Ok(records) = cgm::decode(rest, crc_required) {
        let bytes = cgm::encode(&records).expect("decoded values re-encode");
        assert_eq!(cgm::decode(&bytes, crc_required), Ok(records));
    }
});
