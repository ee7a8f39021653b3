//! Published vectors, every flag combination, truncation/over-length/reserved rejection and
//! decode(encode(x)) == x property tests for every profile.

use proptest::prelude::*;

use super::*;
use crate::decode::ieee11073::tests::float_value;
use crate::reading::{Decimal, MeasuredValue, SourceKind, StatusFlag};

fn num(m: i64, e: i8) -> MeasuredValue {
    MeasuredValue::Number(Decimal::new(m, e))
}

fn ctx() -> DecodeContext {
    DecodeContext {
        device: DeviceIdentity {
            source: SourceKind::Ble,
            address: "AA:BB:CC:DD:EE:FF".into(),
            system_id: None,
            manufacturer: None,
            model: None,
            serial_number: None,
        },
        received_at: time::macros::datetime!(2026-01-02 10:00:00 UTC),
        clock: ClockContext::default(),
        features: FeatureContext::default(),
    }
}

/// Every strict prefix of a valid value is a typed error, and so is one extra byte.
fn assert_rejects_truncation_and_overlength(uuid: u16, bytes: &[u8], features: &FeatureContext) {
    decode_characteristic(uuid, bytes, features).expect("valid value");
    for len in 0..bytes.len() {
        let err = decode_characteristic(uuid, &bytes[..len], features)
            .expect_err("a truncated value must not decode");
        assert!(err.offset().is_some(), "{err}");
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    // CGM treats following bytes as the next record, which is then truncated: still an error.
    assert!(decode_characteristic(uuid, &longer, features).is_err());
}

// ---- Heart rate: NordicSemiconductor/Android-BLE-Common-Library,
// ble-common/src/test/.../hr/HeartRateMeasurementDataCallbackTest.java

#[test]
fn heart_rate_nordic_vectors() {
    let m = heart_rate::decode(&[0, 85]).expect("simple");
    assert_eq!(m.heart_rate, 85);
    assert_eq!(m.sensor_contact, heart_rate::SensorContact::NotSupported);
    let m = heart_rate::decode(&[0x04, 0xFF]).expect("no contact");
    assert_eq!(
        (m.heart_rate, m.sensor_contact),
        (255, heart_rate::SensorContact::NotDetected)
    );
    let m = heart_rate::decode(&[0b11110, 85, 50, 0, 33, 0]).expect("uint8");
    assert_eq!(m.heart_rate, 85);
    assert_eq!(m.sensor_contact, heart_rate::SensorContact::Detected);
    assert_eq!(m.energy_expended_kj, Some(50));
    assert_eq!(m.rr_intervals, vec![33]);
    let m = heart_rate::decode(&[0b11111, 1, 1, 50, 1, 1, 0, 2, 1, 0xFF, 0xFF]).expect("uint16");
    assert_eq!(m.heart_rate, 257);
    assert_eq!(m.energy_expended_kj, Some(306));
    assert_eq!(m.rr_intervals, vec![1, 258, 65535]);
    // "Invalid": RR-interval flag set but none follows.
    assert!(matches!(
        heart_rate::decode(&[0b10111, 1, 1]),
        Err(DecodeError::Truncated {
            field: "RR-interval",
            offset: 3,
            ..
        })
    ));
}

#[test]
fn heart_rate_every_flag_combination() {
    for flags in 0u8..=0x1F {
        let m = heart_rate::HeartRateMeasurement {
            heart_rate: 72,
            wide_format: flags & 1 != 0,
            sensor_contact: match (flags >> 1) & 3 {
                2 => heart_rate::SensorContact::NotDetected,
                3 => heart_rate::SensorContact::Detected,
                _ => heart_rate::SensorContact::NotSupported,
            },
            energy_expended_kj: (flags & 0x08 != 0).then_some(12),
            rr_intervals: if flags & 0x10 != 0 { vec![800] } else { vec![] },
        };
        let bytes = heart_rate::encode(&m).expect("encodable");
        assert_eq!(
            heart_rate::decode(&bytes),
            Ok(m.clone()),
            "flags {flags:#x}"
        );
        assert_rejects_truncation_and_overlength(
            uuids::HEART_RATE_MEASUREMENT,
            &bytes,
            &FeatureContext::default(),
        );
        let readings = heart_rate::readings(&m, &ctx());
        assert_eq!(readings.len(), 1);
        assert_eq!(
            readings[0]
                .status
                .contains(&StatusFlag::SensorContactNotDetected),
            m.sensor_contact == heart_rate::SensorContact::NotDetected
        );
    }
    for reserved in [0x20u8, 0x40, 0x80] {
        assert!(matches!(
            heart_rate::decode(&[reserved, 60]),
            Err(DecodeError::Reserved {
                field: "flags",
                offset: 0,
                ..
            })
        ));
    }
}

// ---- Blood pressure: NordicSemiconductor/Android-BLE-Common-Library,
// ble-common/src/test/.../bps/BloodPressureMeasurementDataCallbackTest.java

#[test]
fn blood_pressure_nordic_full() {
    let bytes = [
        0x1E, 0x8A, 0x00, 0x58, 0x00, 0x78, 0x00, 0x00, 0x00, 0x04, 0x11, 0x14, 0x29, 0x3B, 0x3C,
        0x00, 0x01, 0x27, 0x00,
    ];
    let m = blood_pressure::decode(&bytes).expect("full");
    assert_eq!(m.unit, blood_pressure::PressureUnit::MillimetresOfMercury);
    assert_eq!(
        (m.systolic, m.diastolic, m.mean_arterial),
        (num(138, 0), num(88, 0), num(120, 0))
    );
    let t = m.timestamp.expect("timestamp");
    assert_eq!(
        (t.year, t.month, t.day, t.hours, t.minutes, t.seconds),
        (0, 4, 17, 20, 41, 59)
    );
    assert_eq!(m.pulse_rate, Some(num(60, 0)));
    assert_eq!(m.user_id, Some(1));
    let s = m.status.expect("status");
    assert!(s.body_movement && s.cuff_too_loose && s.irregular_pulse && s.improper_position);
    assert_eq!(
        s.pulse_rate_range,
        blood_pressure::PulseRateRange::WithinRange
    );
    assert_eq!(blood_pressure::encode(&m).expect("encode"), bytes);
    let readings = blood_pressure::readings(&m, &ctx());
    assert_eq!(readings.len(), 2);
    assert_eq!(readings[0].components.len(), 3);
    assert_eq!(readings[1].kind, Kind::PulseRate);
    assert!(readings[1].status.contains(&StatusFlag::IrregularPulse));
}

#[test]
fn blood_pressure_nordic_some_and_minimal() {
    let some = [
        0x15, 0xBD, 0xF0, 0x0B, 0x00, 0x9F, 0xF0, 0x3C, 0x00, 0x12, 0x00,
    ];
    let m = blood_pressure::decode(&some).expect("some");
    assert_eq!(m.unit, blood_pressure::PressureUnit::Kilopascal);
    assert_eq!(
        (m.systolic, m.diastolic, m.mean_arterial),
        (num(189, -1), num(11, 0), num(159, -1))
    );
    let s = m.status.expect("status");
    assert!(s.cuff_too_loose && !s.body_movement && !s.irregular_pulse && !s.improper_position);
    assert_eq!(
        s.pulse_rate_range,
        blood_pressure::PulseRateRange::BelowLowerLimit
    );
    assert_eq!(m.user_id, None);
    let minimal = [0x00, 0xBD, 0xF0, 0x0B, 0x00, 0x9F, 0xF0];
    let m = blood_pressure::decode(&minimal).expect("minimal");
    assert!(m.timestamp.is_none() && m.pulse_rate.is_none() && m.status.is_none());
    // "Too short" and "no timestamp" invalid vectors.
    assert!(blood_pressure::decode(&[1, 2, 3, 4, 5, 6]).is_err());
    assert!(matches!(
        blood_pressure::decode(&[3, 2, 3, 4, 5, 6, 7]),
        Err(DecodeError::Truncated {
            field: "time stamp",
            offset: 7,
            ..
        })
    ));
}

fn dt(year: u16) -> DeviceTime {
    DeviceTime {
        year,
        month: 3,
        day: 14,
        hours: 15,
        minutes: 9,
        seconds: 26,
    }
}

#[test]
fn blood_pressure_every_flag_combination_and_status() {
    for flags in 0u8..=0x1F {
        for range in [
            blood_pressure::PulseRateRange::WithinRange,
            blood_pressure::PulseRateRange::AboveUpperLimit,
            blood_pressure::PulseRateRange::BelowLowerLimit,
        ] {
            let m = blood_pressure::BloodPressureMeasurement {
                unit: if flags & 1 != 0 {
                    blood_pressure::PressureUnit::Kilopascal
                } else {
                    blood_pressure::PressureUnit::MillimetresOfMercury
                },
                systolic: num(120, 0),
                diastolic: num(80, 0),
                mean_arterial: MeasuredValue::NotANumber,
                timestamp: (flags & 2 != 0).then(|| dt(2026)),
                pulse_rate: (flags & 4 != 0).then(|| num(61, 0)),
                user_id: (flags & 8 != 0).then_some(3),
                status: (flags & 0x10 != 0).then_some(blood_pressure::MeasurementStatus {
                    body_movement: true,
                    cuff_too_loose: false,
                    irregular_pulse: true,
                    pulse_rate_range: range,
                    improper_position: false,
                }),
            };
            let bytes = blood_pressure::encode(&m).expect("encodable");
            assert_eq!(bytes[0], flags);
            assert_eq!(blood_pressure::decode(&bytes), Ok(m.clone()));
            assert_rejects_truncation_and_overlength(
                uuids::BLOOD_PRESSURE_MEASUREMENT,
                &bytes,
                &FeatureContext::default(),
            );
            let readings = blood_pressure::readings(&m, &ctx());
            assert_eq!(readings.len(), 1 + usize::from(m.pulse_rate.is_some()));
        }
    }
    // Pulse rate range 3 and status bits 6-15 are reserved.
    let mut bytes = vec![0x10, 0x78, 0, 0x50, 0, 0x5A, 0, 0x18, 0];
    assert!(matches!(
        blood_pressure::decode(&bytes),
        Err(DecodeError::Reserved { offset: 7, .. })
    ));
    bytes[7] = 0x40;
    assert!(matches!(
        blood_pressure::decode(&bytes),
        Err(DecodeError::Reserved { offset: 7, .. })
    ));
    // Reserved SFLOAT value 0x0801 in the diastolic field.
    assert!(matches!(
        blood_pressure::decode(&[0, 0x78, 0, 0x01, 0x08, 0x5A, 0]),
        Err(DecodeError::Reserved {
            field: "diastolic",
            offset: 3,
            ..
        })
    ));
}

#[test]
fn intermediate_cuff_pressure_yields_no_reading() {
    let bytes = [0x00, 0x64, 0x00, 0xFF, 0x07, 0xFF, 0x07];
    let value = decode_characteristic(
        uuids::INTERMEDIATE_CUFF_PRESSURE,
        &bytes,
        &FeatureContext::default(),
    )
    .expect("valid");
    assert!(value.readings(&ctx()).is_empty());
}

#[test]
fn date_time_rejects_out_of_range_fields() {
    assert!(matches!(
        clock::decode_date_time(&[0xEA, 0x07, 13, 1, 0, 0, 0]),
        Err(DecodeError::Invalid {
            field: "date time",
            offset: 2,
            ..
        })
    ));
    assert!(matches!(
        clock::decode_date_time(&[0xEA, 0x07, 1, 1, 24, 0, 0]),
        Err(DecodeError::Invalid { offset: 4, .. })
    ));
    assert_eq!(
        clock::decode_date_time(&[0, 0, 0, 0, 0, 0, 0]).map(|t| t.year),
        Ok(0)
    );
}

// ---- PLX

#[test]
fn plx_spot_check_every_flag_combination() {
    for flags in 0u8..=0x1F {
        let m = plx::PlxSpotCheck {
            spo2: num(98, 0),
            pulse_rate: num(72, 0),
            timestamp: (flags & 1 != 0).then(|| dt(2025)),
            measurement_status: (flags & 2 != 0).then_some(0x4040),
            device_sensor_status: (flags & 4 != 0).then_some(0x00_0820),
            pulse_amplitude_index: (flags & 8 != 0).then(|| num(35, -1)),
            device_clock_not_set: flags & 0x10 != 0,
        };
        let bytes = plx::encode_spot_check(&m).expect("encodable");
        assert_eq!(bytes[0], flags);
        assert_eq!(plx::decode_spot_check(&bytes), Ok(m.clone()));
        assert_rejects_truncation_and_overlength(
            uuids::PLX_SPOT_CHECK_MEASUREMENT,
            &bytes,
            &FeatureContext::default(),
        );
        let readings = plx::spot_check_readings(&m, &ctx());
        assert_eq!(readings.len(), 2);
        assert_eq!(readings[0].kind, Kind::OxygenSaturation);
        assert_eq!(
            readings[0].status.contains(&StatusFlag::DeviceClockNotSet),
            m.device_clock_not_set
        );
        assert_eq!(
            readings[0]
                .status
                .contains(&StatusFlag::QuestionableMeasurement),
            m.measurement_status.is_some()
        );
        assert_eq!(
            readings[0].status.contains(&StatusFlag::LowPerfusion),
            m.device_sensor_status.is_some()
        );
    }
    // Measurement status bits 0-4 are reserved.
    assert!(matches!(
        plx::decode_spot_check(&[0x02, 0x62, 0, 0x48, 0, 0x01, 0x00]),
        Err(DecodeError::Reserved {
            field: "measurement status",
            offset: 5,
            ..
        })
    ));
}

#[test]
fn plx_continuous_every_flag_combination() {
    for flags in 0u8..=0x1F {
        let pair = |s, p| plx::SpO2Pr {
            spo2: num(s, 0),
            pulse_rate: num(p, 0),
        };
        let m = plx::PlxContinuous {
            normal: pair(97, 70),
            fast: (flags & 1 != 0).then(|| pair(96, 71)),
            slow: (flags & 2 != 0).then(|| pair(98, 69)),
            measurement_status: (flags & 4 != 0).then_some(0x0080),
            device_sensor_status: (flags & 8 != 0).then_some(0x00_0002),
            pulse_amplitude_index: (flags & 0x10 != 0)
                .then_some(MeasuredValue::NotAtThisResolution),
        };
        let bytes = plx::encode_continuous(&m).expect("encodable");
        assert_eq!(bytes[0], flags);
        assert_eq!(plx::decode_continuous(&bytes), Ok(m.clone()));
        assert_rejects_truncation_and_overlength(
            uuids::PLX_CONTINUOUS_MEASUREMENT,
            &bytes,
            &FeatureContext::default(),
        );
        let readings = plx::continuous_readings(&m, &ctx());
        assert_eq!(
            readings[0].value.as_ref().map(|q| q.value),
            Some(num(97, 0))
        );
    }
}

// ---- Thermometer, weight, glucose

#[test]
fn temperature_every_flag_combination_and_types() {
    for flags in 0u8..=0x07 {
        for t in thermometer::TemperatureType::ALL {
            let m = thermometer::TemperatureMeasurement {
                unit: if flags & 1 != 0 {
                    thermometer::TemperatureUnit::Fahrenheit
                } else {
                    thermometer::TemperatureUnit::Celsius
                },
                value: num(3650, -2),
                timestamp: (flags & 2 != 0).then(|| dt(2024)),
                temperature_type: (flags & 4 != 0).then_some(t),
            };
            let bytes = thermometer::encode(&m).expect("encodable");
            assert_eq!(thermometer::decode(&bytes), Ok(m.clone()));
            assert_rejects_truncation_and_overlength(
                uuids::TEMPERATURE_MEASUREMENT,
                &bytes,
                &FeatureContext::default(),
            );
        }
    }
    assert!(matches!(
        thermometer::decode_type(&[0]),
        Err(DecodeError::Reserved { .. })
    ));
    assert!(matches!(
        thermometer::decode_type(&[10]),
        Err(DecodeError::Reserved { .. })
    ));
    assert_eq!(
        thermometer::decode_type(&[3]),
        Ok(thermometer::TemperatureType::Ear)
    );
}

#[test]
fn weight_resolution_keeps_the_scales_precision() {
    // 70.000 kg = 14000 × 0.005 kg, flags 0 (SI, no options).
    let bytes = [0x00, 0xB0, 0x36];
    let mut context = ctx();
    let kg = |c: &DecodeContext| {
        readings_from_characteristic(uuids::WEIGHT_MEASUREMENT, &bytes, c).expect("valid")[0]
            .value
            .clone()
            .expect("value")
            .value
    };
    assert_eq!(kg(&context), num(70000, -3));
    // Feature: weight resolution 3 (0.1 kg) → "70.0".
    context.features.weight_scale =
        Some(weight::decode_feature(&[3 << 3, 0, 0, 0]).expect("feature"));
    assert_eq!(kg(&context), num(700, -1));
    // 0xFFFF = measurement unsuccessful → NaN, never a number.
    let r = readings_from_characteristic(uuids::WEIGHT_MEASUREMENT, &[0, 0xFF, 0xFF], &context)
        .expect("valid");
    assert_eq!(
        r[0].value.as_ref().map(|q| q.value),
        Some(MeasuredValue::NotANumber)
    );
    // Reserved feature resolution values.
    assert!(weight::decode_feature(&[8 << 3, 0, 0, 0]).is_err());
    assert!(weight::decode_feature(&[0, 2, 0, 0]).is_err());
}

#[test]
fn weight_with_bmi_and_height() {
    let m = weight::WeightMeasurement {
        units: weight::WeightUnits::Si,
        weight_raw: 14000,
        timestamp: Some(dt(2026)),
        user_id: Some(2),
        bmi_and_height: Some(weight::BmiAndHeight {
            bmi_raw: 229,
            height_raw: 1750,
        }),
    };
    let bytes = weight::encode(&m).expect("encodable");
    assert_eq!(weight::decode(&bytes), Ok(m.clone()));
    assert_rejects_truncation_and_overlength(
        uuids::WEIGHT_MEASUREMENT,
        &bytes,
        &FeatureContext::default(),
    );
    let r = weight::readings(&m, &ctx());
    let kinds: Vec<_> = r.iter().map(|r| r.kind).collect();
    assert_eq!(
        kinds,
        vec![Kind::BodyWeight, Kind::BodyMassIndex, Kind::BodyHeight]
    );
    assert_eq!(r[1].value.as_ref().map(|q| q.value), Some(num(229, -1)));
    assert_eq!(r[2].value.as_ref().map(|q| q.value), Some(num(1750, -3)));
}

#[test]
fn glucose_units_and_time_offset() {
    let m = glucose::GlucoseMeasurement {
        sequence: 7,
        base_time: DeviceTime {
            year: 2026,
            month: 1,
            day: 1,
            hours: 23,
            minutes: 50,
            seconds: 0,
        },
        time_offset_minutes: Some(15),
        concentration: Some(glucose::GlucoseConcentration {
            // 92 mg/dL = 0.00092 kg/L = 92 × 10^-5.
            value: num(92, -5),
            unit: glucose::GlucoseUnit::KilogramPerLitre,
            sample_type: 1,
            sample_location: 1,
        }),
        // b1 sensor malfunction, b3 strip insertion error (GATT Glucose Sensor Status Annunciation).
        sensor_status: Some(0x000A),
        context_follows: true,
    };
    let bytes = glucose::encode(&m).expect("encodable");
    assert_eq!(glucose::decode(&bytes), Ok(m.clone()));
    assert_rejects_truncation_and_overlength(
        uuids::GLUCOSE_MEASUREMENT,
        &bytes,
        &FeatureContext::default(),
    );
    let r = glucose::readings(&m, &ctx());
    let q = r[0].value.clone().expect("value");
    assert_eq!((q.value, q.ucum.as_str()), (num(92, 0), "mg/dL"));
    assert_eq!(r[0].sequence, Some(7));
    // Offset crosses midnight into the next day.
    assert_eq!(
        r[0].device_time,
        Some(DeviceTime {
            year: 2026,
            month: 1,
            day: 2,
            hours: 0,
            minutes: 5,
            seconds: 0
        })
    );
    assert_eq!(
        r[0].status,
        vec![StatusFlag::SensorMalfunction, StatusFlag::Other(0x0303)]
    );
    // Reserved sample type 0.
    let mut bad = bytes.clone();
    bad[14] = 0x10;
    assert!(matches!(
        glucose::decode(&bad),
        Err(DecodeError::Reserved {
            field: "type-sample location",
            offset: 14,
            ..
        })
    ));
}

// ---- CGM: NordicSemiconductor/Android-BLE-Common-Library,
// ble-common/src/test/.../cgm/ContinuousGlucoseMeasurementDataCallbackTest.java

#[test]
fn cgm_nordic_full_record_with_crc() {
    let bytes = [
        15,
        0b1110_0011,
        0xD2,
        0xE4,
        5,
        0,
        0x02,
        0x14,
        0xFF,
        0x02,
        0xF0,
        0xE5,
        0xF3,
        0x8E,
        0x3F,
    ];
    assert_eq!(cgm::crc16_mcrf4xx(&bytes[..13]), 0x3F8E);
    let records = cgm::decode(&bytes, true).expect("valid");
    let r = &records[0];
    assert_eq!(r.glucose, num(1234, -2));
    assert_eq!(r.trend, Some(num(2, -1)));
    assert_eq!(r.quality, Some(num(997, -1)));
    assert_eq!(
        (r.warning, r.cal_temp, r.status),
        (Some(0x02), Some(0x14), Some(0xFF))
    );
    assert_eq!(r.time_offset_minutes, 5);
    assert_eq!(cgm::encode(&records).expect("encode"), bytes);
    assert_rejects_truncation_and_overlength(
        uuids::CGM_MEASUREMENT,
        &bytes,
        &FeatureContext {
            cgm_e2e_crc: true,
            ..Default::default()
        },
    );
}

#[test]
fn cgm_two_records_and_crc_error() {
    let double = [6, 0, 0x0C, 0x10, 5, 0, 6, 0, 0x0C, 0x10, 6, 0];
    let records = cgm::decode(&double, false).expect("valid");
    assert_eq!(records.len(), 2);
    assert_eq!(
        records
            .iter()
            .map(|r| r.time_offset_minutes)
            .collect::<Vec<_>>(),
        vec![5, 6]
    );
    let readings =
        readings_from_characteristic(uuids::CGM_MEASUREMENT, &double, &ctx()).expect("valid");
    assert_eq!(readings.len(), 2);
    // Wrong CRC (computed 0x6F59, carried 0x6F58).
    let bad = [8, 0, 0x0C, 0x10, 6, 0, 0x58, 0x6F];
    assert_eq!(
        cgm::decode(&bad, false),
        Err(DecodeError::CrcMismatch {
            field: "E2E-CRC",
            offset: 6,
            carried: 0x6F58,
            computed: 0x6F59
        })
    );
    // CRC required by the feature but missing.
    assert!(cgm::decode(&double[..6], true).is_err());
    // Error offsets count from the start of the notification.
    let mut second_bad = double;
    second_bad[7] = 0x04; // reserved flag bit in record 2
    assert!(matches!(
        cgm::decode(&second_bad, false),
        Err(DecodeError::Reserved { offset: 7, .. })
    ));
}

// ---- RACP and clocks

#[test]
fn racp_requests_and_responses() {
    use racp::*;
    // Report all records: 01 01.
    assert_eq!(
        decode_request(&[1, 1]),
        Ok(RacpRequest {
            op_code: RacpOpCode::ReportStoredRecords,
            operator: RacpOperator::All
        })
    );
    // Report records with sequence ≥ 0x0102: 01 03 01 02 01.
    let req = RacpRequest {
        op_code: RacpOpCode::ReportStoredRecords,
        operator: RacpOperator::GreaterOrEqual(FilterValue::Sequence(0x0102)),
    };
    assert_eq!(encode_request(&req).expect("encode"), vec![1, 3, 1, 2, 1]);
    assert_eq!(decode_request(&[1, 3, 1, 2, 1]), Ok(req));
    let range = RacpRequest {
        op_code: RacpOpCode::DeleteStoredRecords,
        operator: RacpOperator::WithinRange(
            FilterValue::UserFacingTime(dt(2025)),
            FilterValue::UserFacingTime(dt(2026)),
        ),
    };
    let bytes = encode_request(&range).expect("encode");
    assert_eq!(decode_request(&bytes), Ok(range));
    assert!(decode_request(&[1, 7]).is_err(), "operator 7 is reserved");
    assert!(decode_request(&[9, 1]).is_err(), "op code 9 is reserved");
    // Responses: 05 00 0A 00 = 10 records; 06 00 01 01 = report stored records: success.
    assert_eq!(
        decode_response(&[5, 0, 10, 0]),
        Ok(RacpResponse::NumberOfRecords { count: 10 })
    );
    assert_eq!(
        decode_response(&[6, 0, 1, 6]),
        Ok(RacpResponse::ResponseCode {
            request_op_code: 1,
            code: RacpResponseCode::NoRecordsFound
        })
    );
    assert!(decode_response(&[6, 0, 1, 10]).is_err());
    assert!(decode_response(&[6, 0, 1]).is_err());
}

#[test]
fn current_time_round_trip() {
    let t = clock::CurrentTime {
        date_time: dt(2026),
        day_of_week: 6,
        fractions256: 128,
        adjust_reason: 0x01,
    };
    let bytes = clock::encode_current_time(&t);
    assert_eq!(clock::decode_current_time(&bytes), Ok(t));
    assert_rejects_truncation_and_overlength(
        uuids::CURRENT_TIME,
        &bytes,
        &FeatureContext::default(),
    );
    let mut bad = bytes.clone();
    bad[7] = 8;
    assert!(
        clock::decode_current_time(&bad).is_err(),
        "day of week 8 is reserved"
    );
}

#[test]
fn unsupported_uuid_is_a_typed_error() {
    assert_eq!(
        readings_from_characteristic(0x2A19, &[100], &ctx()),
        Err(DecodeError::UnsupportedCharacteristic { uuid: 0x2A19 })
    );
}

// ---- Property tests: decode(encode(x)) == x

fn sfloat() -> impl Strategy<Value = MeasuredValue> {
    prop_oneof![
        (-2045i64..=2045, -8i8..=7).prop_map(|(m, e)| num(m, e)),
        Just(MeasuredValue::NotANumber),
        Just(MeasuredValue::NotAtThisResolution),
        Just(MeasuredValue::PositiveInfinity),
        Just(MeasuredValue::NegativeInfinity),
    ]
}

fn device_time() -> impl Strategy<Value = DeviceTime> {
    (
        prop_oneof![Just(0u16), 1582u16..=9999],
        0u8..=12,
        0u8..=31,
        0u8..=23,
        0u8..=59,
        0u8..=59,
    )
        .prop_map(|(year, month, day, hours, minutes, seconds)| DeviceTime {
            year,
            month,
            day,
            hours,
            minutes,
            seconds,
        })
}

fn bp() -> impl Strategy<Value = blood_pressure::BloodPressureMeasurement> {
    use blood_pressure::*;
    (
        any::<bool>(),
        (sfloat(), sfloat(), sfloat()),
        proptest::option::of(device_time()),
        proptest::option::of(sfloat()),
        proptest::option::of(any::<u8>()),
        proptest::option::of((any::<[bool; 4]>(), 0u8..3)),
    )
        .prop_map(|(kpa, (s, d, m), timestamp, pulse_rate, user_id, status)| {
            BloodPressureMeasurement {
                unit: if kpa {
                    PressureUnit::Kilopascal
                } else {
                    PressureUnit::MillimetresOfMercury
                },
                systolic: s,
                diastolic: d,
                mean_arterial: m,
                timestamp,
                pulse_rate,
                user_id,
                status: status.map(|(b, r)| MeasurementStatus {
                    body_movement: b[0],
                    cuff_too_loose: b[1],
                    irregular_pulse: b[2],
                    improper_position: b[3],
                    pulse_rate_range: [
                        PulseRateRange::WithinRange,
                        PulseRateRange::AboveUpperLimit,
                        PulseRateRange::BelowLowerLimit,
                    ][usize::from(r)],
                }),
            }
        })
}

fn cgm_record() -> impl Strategy<Value = cgm::CgmRecord> {
    (
        sfloat(),
        any::<u16>(),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(any::<u8>()),
        proptest::option::of(sfloat()),
        proptest::option::of(sfloat()),
        any::<bool>(),
    )
        .prop_map(
            |(glucose, time_offset_minutes, warning, cal_temp, status, trend, quality, e2e_crc)| {
                cgm::CgmRecord {
                    glucose,
                    time_offset_minutes,
                    warning,
                    cal_temp,
                    status,
                    trend,
                    quality,
                    e2e_crc,
                }
            },
        )
}

proptest! {
    #[test]
    fn prop_heart_rate(hr in any::<u16>(), wide in any::<bool>(), contact in 0u8..3, energy in proptest::option::of(any::<u16>()), rr in proptest::collection::vec(any::<u16>(), 0..8)) {
        let m = heart_rate::HeartRateMeasurement {
            heart_rate: if wide { hr } else { hr & 0xFF },
            wide_format: wide,
            sensor_contact: [heart_rate::SensorContact::NotSupported, heart_rate::SensorContact::NotDetected, heart_rate::SensorContact::Detected][usize::from(contact)],
            energy_expended_kj: energy,
            rr_intervals: rr,
        };
        let bytes = heart_rate::encode(&m).expect("encodable");
        prop_assert_eq!(heart_rate::decode(&bytes), Ok(m));
    }

    #[test]
    fn prop_blood_pressure(m in bp()) {
        let bytes = blood_pressure::encode(&m).expect("encodable");
        prop_assert_eq!(blood_pressure::decode(&bytes), Ok(m));
    }

    #[test]
    fn prop_temperature(f in any::<bool>(), value in float_value(), timestamp in proptest::option::of(device_time()), t in proptest::option::of(0usize..9)) {
        let m = thermometer::TemperatureMeasurement {
            unit: if f { thermometer::TemperatureUnit::Fahrenheit } else { thermometer::TemperatureUnit::Celsius },
            value,
            timestamp,
            temperature_type: t.map(|i| thermometer::TemperatureType::ALL[i]),
        };
        let bytes = thermometer::encode(&m).expect("encodable");
        prop_assert_eq!(thermometer::decode(&bytes), Ok(m));
    }

    #[test]
    fn prop_plx_spot_check(spo2 in sfloat(), pr in sfloat(), timestamp in proptest::option::of(device_time()), ms in proptest::option::of(any::<u16>()), ds in proptest::option::of(0u32..=0xFFFF), pai in proptest::option::of(sfloat()), clock in any::<bool>()) {
        let m = plx::PlxSpotCheck {
            spo2, pulse_rate: pr, timestamp,
            measurement_status: ms.map(|v| v & 0xFFE0),
            device_sensor_status: ds,
            pulse_amplitude_index: pai,
            device_clock_not_set: clock,
        };
        let bytes = plx::encode_spot_check(&m).expect("encodable");
        prop_assert_eq!(plx::decode_spot_check(&bytes), Ok(m));
    }

    #[test]
    fn prop_weight(imperial in any::<bool>(), w in any::<u16>(), timestamp in proptest::option::of(device_time()), user in proptest::option::of(any::<u8>()), bh in proptest::option::of((any::<u16>(), any::<u16>()))) {
        let m = weight::WeightMeasurement {
            units: if imperial { weight::WeightUnits::Imperial } else { weight::WeightUnits::Si },
            weight_raw: w, timestamp, user_id: user,
            bmi_and_height: bh.map(|(bmi_raw, height_raw)| weight::BmiAndHeight { bmi_raw, height_raw }),
        };
        let bytes = weight::encode(&m).expect("encodable");
        prop_assert_eq!(weight::decode(&bytes), Ok(m));
    }

    #[test]
    fn prop_glucose(seq in any::<u16>(), base in device_time(), offset in proptest::option::of(any::<i16>()), conc in proptest::option::of((sfloat(), any::<bool>(), 1u8..=10, prop_oneof![1u8..=4, Just(15u8)])), status in proptest::option::of(0u16..=0x0FFF), ctx_follows in any::<bool>()) {
        let m = glucose::GlucoseMeasurement {
            sequence: seq, base_time: base, time_offset_minutes: offset,
            concentration: conc.map(|(value, molar, sample_type, sample_location)| glucose::GlucoseConcentration {
                value,
                unit: if molar { glucose::GlucoseUnit::MolePerLitre } else { glucose::GlucoseUnit::KilogramPerLitre },
                sample_type, sample_location,
            }),
            sensor_status: status, context_follows: ctx_follows,
        };
        let bytes = glucose::encode(&m).expect("encodable");
        prop_assert_eq!(glucose::decode(&bytes), Ok(m));
    }

    #[test]
    fn prop_cgm(records in proptest::collection::vec(cgm_record(), 1..4)) {
        let bytes = cgm::encode(&records).expect("encodable");
        // Mixed CRC presence decodes when the feature does not require it.
        prop_assert_eq!(cgm::decode(&bytes, false), Ok(records));
    }

    #[test]
    fn prop_any_bytes_never_panic(uuid_index in 0usize..18, bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        let all = [
            uuids::DATE_TIME, uuids::GLUCOSE_MEASUREMENT, uuids::TEMPERATURE_MEASUREMENT,
            uuids::TEMPERATURE_TYPE, uuids::INTERMEDIATE_TEMPERATURE, uuids::CURRENT_TIME,
            uuids::GLUCOSE_MEASUREMENT_CONTEXT, uuids::BLOOD_PRESSURE_MEASUREMENT,
            uuids::INTERMEDIATE_CUFF_PRESSURE, uuids::HEART_RATE_MEASUREMENT,
            uuids::BLOOD_PRESSURE_FEATURE, uuids::RECORD_ACCESS_CONTROL_POINT,
            uuids::PLX_SPOT_CHECK_MEASUREMENT, uuids::PLX_CONTINUOUS_MEASUREMENT,
            uuids::PLX_FEATURES, uuids::WEIGHT_MEASUREMENT, uuids::WEIGHT_SCALE_FEATURE,
            uuids::CGM_MEASUREMENT,
        ];
        let _ = readings_from_characteristic(all[uuid_index], &bytes, &ctx());
    }
}
