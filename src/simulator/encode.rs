//! A sample in each transport's wire format, built with the project's own encoders (the same
//! code paths the gateway's decoders are tested against).

use serde_json::{Value, json};

use super::SimError;
use super::engine::{Sample, SampleValue};
use super::scenario::{BleProfile, DeviceSpec, MqttMeasure, MqttSchema, SerialProtocol, Special};
use super::stream::Quantity;
use crate::decode::gatt::{
    blood_pressure, cgm, glucose, heart_rate, plx, thermometer, uuids, weight,
};
use crate::reading::{Decimal, DeviceTime, MeasuredValue};

/// How a BLE value reaches the central.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Notified/indicated now (or, in hal's simulator, on the next connection).
    Push,
    /// Kept in the device's record store, fetched through RACP.
    Store,
}

/// One BLE measurement: which characteristic of the profile's service, the bytes, how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BleValue {
    pub characteristic: u16,
    pub bytes: Vec<u8>,
    pub delivery: Delivery,
    /// The record sequence number (glucose) or time offset (CGM) for the RACP store.
    pub record_key: u16,
}

fn measured(value: Option<&SampleValue>) -> MeasuredValue {
    match value {
        Some(SampleValue::Number(d)) => MeasuredValue::Number(*d),
        Some(SampleValue::Special(s)) => match s {
            Special::NotANumber => MeasuredValue::NotANumber,
            Special::NotAtThisResolution => MeasuredValue::NotAtThisResolution,
            Special::PositiveInfinity => MeasuredValue::PositiveInfinity,
            Special::NegativeInfinity => MeasuredValue::NegativeInfinity,
        },
        None => MeasuredValue::NotANumber,
    }
}

/// `d` × 10^`shift`, as an integer (rounded).
fn scaled(d: Decimal, shift: i32) -> i64 {
    (d.mantissa as f64 * 10f64.powi(i32::from(d.exponent) + shift)).round() as i64
}

fn number(sample: &Sample, q: Quantity, fallback: i64) -> Decimal {
    sample.number(q).unwrap_or(Decimal::new(fallback, 0))
}

pub fn ble_value(profile: BleProfile, sample: &Sample) -> Result<BleValue, SimError> {
    use Quantity as Q;
    let v = |q: Quantity| measured(sample.values.get(&q));
    let at = Some(sample.time);
    let key = u16::try_from(sample.sequence % 0x1_0000).unwrap_or(0);
    let push = |characteristic, bytes| BleValue {
        characteristic,
        bytes,
        delivery: Delivery::Push,
        record_key: key,
    };
    Ok(match profile {
        BleProfile::HeartRate => push(
            uuids::HEART_RATE_MEASUREMENT,
            heart_rate::encode(&heart_rate::HeartRateMeasurement {
                heart_rate: u16::try_from(scaled(number(sample, Q::HeartRate, 70), 0))
                    .unwrap_or(70),
                wide_format: false,
                sensor_contact: heart_rate::SensorContact::Detected,
                energy_expended_kj: None,
                rr_intervals: Vec::new(),
            })?,
        ),
        BleProfile::BloodPressure => {
            let mean = match (sample.number(Q::Systolic), sample.number(Q::Diastolic)) {
                (Some(s), Some(d)) => {
                    MeasuredValue::Number(Decimal::new((scaled(s, 0) + 2 * scaled(d, 0)) / 3, 0))
                }
                _ => MeasuredValue::NotANumber,
            };
            push(
                uuids::BLOOD_PRESSURE_MEASUREMENT,
                blood_pressure::encode(&blood_pressure::BloodPressureMeasurement {
                    unit: blood_pressure::PressureUnit::MillimetresOfMercury,
                    systolic: v(Q::Systolic),
                    diastolic: v(Q::Diastolic),
                    mean_arterial: mean,
                    timestamp: at,
                    pulse_rate: Some(v(Q::Pulse)),
                    user_id: None,
                    status: None,
                })?,
            )
        }
        BleProfile::Thermometer => push(
            uuids::TEMPERATURE_MEASUREMENT,
            thermometer::encode(&thermometer::TemperatureMeasurement {
                unit: thermometer::TemperatureUnit::Celsius,
                value: v(Q::Temperature),
                timestamp: at,
                temperature_type: Some(thermometer::TemperatureType::Ear),
            })?,
        ),
        BleProfile::PulseOximeter => push(
            uuids::PLX_SPOT_CHECK_MEASUREMENT,
            plx::encode_spot_check(&plx::PlxSpotCheck {
                spo2: v(Q::Spo2),
                pulse_rate: v(Q::Pulse),
                timestamp: at,
                measurement_status: None,
                device_sensor_status: None,
                pulse_amplitude_index: None,
                device_clock_not_set: sample.clock_unset,
            })?,
        ),
        BleProfile::WeightScale => push(
            uuids::WEIGHT_MEASUREMENT,
            weight::encode(&weight::WeightMeasurement {
                units: weight::WeightUnits::Si,
                // Default resolution 0.005 kg.
                weight_raw: u16::try_from(scaled(number(sample, Q::Weight, 78), 3) / 5)
                    .unwrap_or(15_600),
                timestamp: at,
                user_id: None,
                bmi_and_height: None,
            })?,
        ),
        BleProfile::Glucose => BleValue {
            characteristic: uuids::GLUCOSE_MEASUREMENT,
            bytes: glucose::encode(&glucose::GlucoseMeasurement {
                sequence: key,
                base_time: sample.time,
                time_offset_minutes: Some(0),
                concentration: Some(glucose::GlucoseConcentration {
                    // mg/dL → kg/L (1 mg/dL = 1e-5 kg/L): same mantissa, exponent − 5.
                    value: match v(Q::Glucose) {
                        MeasuredValue::Number(d) => {
                            MeasuredValue::Number(Decimal::new(d.mantissa, d.exponent - 5))
                        }
                        special => special,
                    },
                    unit: glucose::GlucoseUnit::KilogramPerLitre,
                    sample_type: 1,
                    sample_location: 1,
                }),
                sensor_status: None,
                context_follows: false,
            })?,
            delivery: Delivery::Store,
            record_key: key,
        },
        BleProfile::Cgm => {
            let minutes = u16::try_from(sample.session_minutes).unwrap_or(u16::MAX);
            BleValue {
                characteristic: uuids::CGM_MEASUREMENT,
                bytes: cgm::encode_record(&cgm::CgmRecord {
                    glucose: v(Q::Glucose),
                    time_offset_minutes: minutes,
                    warning: None,
                    cal_temp: None,
                    status: None,
                    trend: None,
                    quality: None,
                    e2e_crc: true,
                })?,
                // Live records are notified; back-dated ones (`stored_records`) go to the RACP store.
                delivery: Delivery::Push,
                // CGM records are keyed by their time offset (RACP filters on it).
                record_key: minutes,
            }
        }
    })
}

fn iso_local(t: &DeviceTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        t.year, t.month, t.day, t.hours, t.minutes, t.seconds
    )
}

/// Device time as RFC 3339 UTC (simulated device clocks run in UTC).
pub fn rfc3339(t: &DeviceTime) -> String {
    format!("{}Z", iso_local(t))
}

fn text(value: Option<&SampleValue>) -> Option<String> {
    match value {
        Some(SampleValue::Number(d)) => Some(d.to_string()),
        _ => None,
    }
}

/// One serial "transmission": the line(s) the device prints for `sample`, CRLF-terminated.
pub fn serial_lines(protocol: SerialProtocol, index: usize, sample: &Sample) -> String {
    use Quantity as Q;
    match protocol {
        SerialProtocol::Masimo => {
            let t = &sample.time;
            let spo2 = text(sample.values.get(&Q::Spo2))
                .map_or_else(|| "---".to_owned(), |s| format!("{s:0>3}"));
            let bpm = text(sample.values.get(&Q::Pulse))
                .map_or_else(|| "---".to_owned(), |s| format!("{s:0>3}"));
            // The Rad-8's format (see decode::serial::masimo::encode_line) with our values.
            format!(
                "{:02}/{:02}/{:02} {:02}:{:02}:{:02} SN={:010} SPO2={spo2}% BPM={bpm} PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n",
                t.month,
                t.day,
                t.year % 100,
                t.hours,
                t.minutes,
                t.seconds,
                56_000 + index
            )
        }
        SerialProtocol::Ndjson => {
            let mut line = serde_json::Map::new();
            for (key, q) in [("hr", Q::HeartRate), ("spo2", Q::Spo2)] {
                if let Some(d) = sample.number(q) {
                    line.insert(key.to_owned(), raw_number(d));
                }
            }
            line.insert("ts".to_owned(), Value::String(iso_local(&sample.time)));
            format!("{}\r\n", Value::Object(line))
        }
        SerialProtocol::Csv => {
            let mut out = String::new();
            for (key, q, unit) in [("HR", Q::HeartRate, "/min"), ("SPO2", Q::Spo2, "%")] {
                if let Some(d) = sample.number(q) {
                    out.push_str(&format!("{key},{d},{unit}\r\n"));
                }
            }
            out
        }
    }
}

/// A JSON number written with exactly the decimal's digits.
fn raw_number(d: Decimal) -> Value {
    serde_json::from_str(&d.to_string()).unwrap_or(Value::Null)
}

/// The payload an MQTT device publishes for `sample`.
pub fn mqtt_payload(
    device: &DeviceSpec,
    schema: MqttSchema,
    measures: MqttMeasure,
    sample: &Sample,
) -> Vec<u8> {
    use Quantity as Q;
    let time = rfc3339(&sample.time);
    let n = |q: Quantity| sample.number(q).map_or(Value::Null, raw_number);
    let value = match schema {
        MqttSchema::Vitals => {
            let reading = match measures {
                MqttMeasure::BloodPressure => json!({"kind": "blood_pressure",
                    "systolic": n(Q::Systolic), "diastolic": n(Q::Diastolic), "unit": "mm[Hg]", "time": time}),
                MqttMeasure::HeartRate => {
                    json!({"kind": "heart_rate", "value": n(Q::HeartRate), "unit": "/min", "time": time})
                }
                MqttMeasure::BodyTemperature => {
                    json!({"kind": "body_temperature", "value": n(Q::Temperature), "unit": "Cel", "time": time})
                }
                MqttMeasure::OxygenSaturation => {
                    json!({"kind": "oxygen_saturation", "value": n(Q::Spo2), "unit": "%", "time": time})
                }
                MqttMeasure::BodyWeight => {
                    json!({"kind": "body_weight", "value": n(Q::Weight), "unit": "kg", "time": time})
                }
                MqttMeasure::BloodGlucose => {
                    json!({"kind": "blood_glucose", "value": n(Q::Glucose), "unit": "mg/dL", "time": time})
                }
            };
            json!({
                "schema": crate::decode::mqtt::vitals::SCHEMA_ID,
                "device": {"manufacturer": "VectorCare Simulated Devices", "model": device.name, "serial_number": device.serial_number},
                "readings": [reading],
            })
        }
        MqttSchema::OpenMhealth => {
            let uv = |q: Quantity, unit: &str| json!({"value": n(q), "unit": unit});
            let (name, body) = match measures {
                MqttMeasure::BloodPressure => (
                    "blood-pressure",
                    json!({
                    "systolic_blood_pressure": uv(Q::Systolic, "mmHg"),
                    "diastolic_blood_pressure": uv(Q::Diastolic, "mmHg")}),
                ),
                MqttMeasure::HeartRate => (
                    "heart-rate",
                    json!({"heart_rate": uv(Q::HeartRate, "beats/min")}),
                ),
                MqttMeasure::BodyTemperature => (
                    "body-temperature",
                    json!({"body_temperature": uv(Q::Temperature, "C")}),
                ),
                MqttMeasure::OxygenSaturation => (
                    "oxygen-saturation",
                    json!({"oxygen_saturation": uv(Q::Spo2, "%")}),
                ),
                MqttMeasure::BodyWeight => {
                    ("body-weight", json!({"body_weight": uv(Q::Weight, "kg")}))
                }
                MqttMeasure::BloodGlucose => (
                    "blood-glucose",
                    json!({"blood_glucose": uv(Q::Glucose, "mg/dL")}),
                ),
            };
            let mut body = body;
            if let Some(map) = body.as_object_mut() {
                map.insert(
                    "effective_time_frame".to_owned(),
                    json!({"date_time": time}),
                );
            }
            json!({
                "header": {"schema_id": {"namespace": "omh", "name": name, "version": "1.0"}},
                "body": body,
            })
        }
        MqttSchema::FhirObservation => {
            let loinc =
                |code: &str| json!({"coding": [{"system": "http://loinc.org", "code": code}]});
            let quantity = |q: Quantity, ucum: &str| {
                json!({"value": n(q), "unit": ucum,
                "system": "http://unitsofmeasure.org", "code": ucum})
            };
            let mut obs = json!({"resourceType": "Observation", "status": "final", "effectiveDateTime": time});
            let (code, value) = match measures {
                MqttMeasure::BloodPressure => {
                    obs["component"] = json!([
                        {"code": loinc("8480-6"), "valueQuantity": quantity(Q::Systolic, "mm[Hg]")},
                        {"code": loinc("8462-4"), "valueQuantity": quantity(Q::Diastolic, "mm[Hg]")},
                    ]);
                    ("85354-9", None)
                }
                MqttMeasure::HeartRate => ("8867-4", Some(quantity(Q::HeartRate, "/min"))),
                MqttMeasure::BodyTemperature => ("8310-5", Some(quantity(Q::Temperature, "Cel"))),
                MqttMeasure::OxygenSaturation => ("59408-5", Some(quantity(Q::Spo2, "%"))),
                MqttMeasure::BodyWeight => ("29463-7", Some(quantity(Q::Weight, "kg"))),
                MqttMeasure::BloodGlucose => ("2339-0", Some(quantity(Q::Glucose, "mg/dL"))),
            };
            obs["code"] = loinc(code);
            if let Some(v) = value {
                obs["valueQuantity"] = v;
            }
            obs
        }
    };
    value.to_string().into_bytes()
}
