use proptest::prelude::*;

use super::*;

fn num(m: i64, e: i8) -> MeasuredValue {
    MeasuredValue::Number(Decimal::new(m, e))
}

/// Exponent-keeping examples from the IEEE 11073-20601 SFLOAT definition as summarised in
/// the project's reference notes (gatt-health-profiles.md): 2, 2.0, 2.00, 20, 200.
#[test]
fn sfloat_keeps_the_exponent() {
    assert_eq!(decode_sfloat(SFloat(0x0002)), Ok(num(2, 0)));
    assert_eq!(decode_sfloat(SFloat(0xF014)), Ok(num(20, -1)));
    assert_eq!(decode_sfloat(SFloat(0xE0C8)), Ok(num(200, -2)));
    assert_eq!(decode_sfloat(SFloat(0x1002)), Ok(num(2, 1)));
    assert_eq!(decode_sfloat(SFloat(0x2002)), Ok(num(2, 2)));
    let text = |raw| match decode_sfloat(SFloat(raw)) {
        Ok(MeasuredValue::Number(d)) => d.to_string(),
        other => panic!("{other:?}"),
    };
    assert_eq!(text(0xE0C8), "2.00");
    assert_eq!(text(0xF014), "2.0");
}

/// Vectors from NordicSemiconductor/Android-BLE-Common-Library,
/// ble-common/src/test/.../bps/BloodPressureMeasurementDataCallbackTest.java: SFLOAT(189,-1)
/// is written as bytes BD F0, SFLOAT(138,0) as 8A 00, SFLOAT(159,-1) as 9F F0.
#[test]
fn sfloat_nordic_vectors() {
    assert_eq!(decode_sfloat(SFloat(0xF0BD)), Ok(num(189, -1)));
    assert_eq!(decode_sfloat(SFloat(0x008A)), Ok(num(138, 0)));
    assert_eq!(decode_sfloat(SFloat(0xF09F)), Ok(num(159, -1)));
    // CGM test in the same suite (cgm/ContinuousGlucoseMeasurementDataCallbackTest.java):
    // SFLOAT(1234,-2) = 12.34 as D2 E4; SFLOAT(12,1) = 120 mg/dL as 0C 10.
    assert_eq!(decode_sfloat(SFloat(0xE4D2)), Ok(num(1234, -2)));
    assert_eq!(decode_sfloat(SFloat(0x100C)), Ok(num(12, 1)));
}

#[test]
fn sfloat_specials() {
    assert_eq!(decode_sfloat(SFloat(0x07FF)), Ok(MeasuredValue::NotANumber));
    assert_eq!(
        decode_sfloat(SFloat(0x0800)),
        Ok(MeasuredValue::NotAtThisResolution)
    );
    assert_eq!(
        decode_sfloat(SFloat(0x07FE)),
        Ok(MeasuredValue::PositiveInfinity)
    );
    assert_eq!(
        decode_sfloat(SFloat(0x0802)),
        Ok(MeasuredValue::NegativeInfinity)
    );
    assert_eq!(decode_sfloat(SFloat(0x0801)), Err(ReservedValue));
    // Same mantissas with a non-zero exponent are ordinary numbers.
    assert_eq!(decode_sfloat(SFloat(0x17FF)), Ok(num(2047, 1)));
    assert_eq!(decode_sfloat(SFloat(0x1800)), Ok(num(-2048, 1)));
}

#[test]
fn sfloat_negative_values() {
    // 0xFFFF: exponent -1, mantissa -1 → -0.1.
    assert_eq!(decode_sfloat(SFloat(0xFFFF)), Ok(num(-1, -1)));
    // 0x8001: exponent -8, mantissa 1.
    assert_eq!(decode_sfloat(SFloat(0x8001)), Ok(num(1, -8)));
}

#[test]
fn float_specials_and_values() {
    assert_eq!(
        decode_float(Float(0x007F_FFFF)),
        Ok(MeasuredValue::NotANumber)
    );
    assert_eq!(
        decode_float(Float(0x0080_0000)),
        Ok(MeasuredValue::NotAtThisResolution)
    );
    assert_eq!(
        decode_float(Float(0x007F_FFFE)),
        Ok(MeasuredValue::PositiveInfinity)
    );
    assert_eq!(
        decode_float(Float(0x0080_0002)),
        Ok(MeasuredValue::NegativeInfinity)
    );
    assert_eq!(decode_float(Float(0x0080_0001)), Err(ReservedValue));
    // 36.4 °C as mantissa 364, exponent -1: bytes 6C 01 00 FF.
    assert_eq!(decode_float(Float(0xFF00_016C)), Ok(num(364, -1)));
    // Negative mantissa: -1 × 10^-2.
    assert_eq!(decode_float(Float(0xFEFF_FFFF)), Ok(num(-1, -2)));
}

/// Every 16-bit pattern decodes without panicking; every non-reserved one re-encodes to the
/// same bits (exhaustive, 65 536 values).
#[test]
fn sfloat_exhaustive_round_trip() {
    for raw in 0..=u16::MAX {
        match decode_sfloat(SFloat(raw)) {
            Ok(v) => assert_eq!(encode_sfloat(&v), Ok(SFloat(raw)), "raw {raw:#06x}"),
            Err(ReservedValue) => assert_eq!(raw, SFLOAT_RESERVED),
        }
    }
}

#[test]
fn encoders_refuse_what_the_wire_cannot_carry() {
    assert!(encode_sfloat(&num(2048, 0)).is_err());
    assert!(encode_sfloat(&num(1, 8)).is_err());
    assert!(encode_sfloat(&num(2047, 0)).is_err(), "collides with NaN");
    assert!(encode_float(&num(1 << 23, 0)).is_err());
    assert!(
        encode_float(&num(0x7F_FFFF, 0)).is_err(),
        "collides with NaN"
    );
}

fn sfloat_value() -> impl Strategy<Value = MeasuredValue> {
    prop_oneof![
        (-2048i64..=2047, -8i8..=7)
            .prop_filter("special at exponent 0", |(m, e)| *e != 0
                || !(2046..=2047).contains(m) && !(-2048..=-2046).contains(m))
            .prop_map(|(m, e)| num(m, e)),
        Just(MeasuredValue::NotANumber),
        Just(MeasuredValue::NotAtThisResolution),
        Just(MeasuredValue::PositiveInfinity),
        Just(MeasuredValue::NegativeInfinity),
    ]
}

pub fn float_value() -> impl Strategy<Value = MeasuredValue> {
    prop_oneof![
        (-(1i64 << 23)..(1i64 << 23), any::<i8>())
            .prop_filter("special at exponent 0", |(m, e)| *e != 0
                || !((1 << 23) - 2..(1 << 23)).contains(m)
                    && !(-(1 << 23)..=-(1 << 23) + 2).contains(m))
            .prop_map(|(m, e)| num(m, e)),
        Just(MeasuredValue::NotANumber),
        Just(MeasuredValue::NotAtThisResolution),
        Just(MeasuredValue::PositiveInfinity),
        Just(MeasuredValue::NegativeInfinity),
    ]
}

proptest! {
    #[test]
    fn sfloat_decode_encode(v in sfloat_value()) {
        let raw = encode_sfloat(&v).expect("strategy yields encodable values");
        prop_assert_eq!(decode_sfloat(raw), Ok(v));
    }

    #[test]
    fn float_decode_encode(v in float_value()) {
        let raw = encode_float(&v).expect("strategy yields encodable values");
        prop_assert_eq!(decode_float(raw), Ok(v));
    }

    #[test]
    fn float_any_bits_never_panic(raw in any::<u32>()) {
        if let Ok(v) = decode_float(Float(raw)) {
            prop_assert_eq!(encode_float(&v), Ok(Float(raw)));
        }
    }
}
