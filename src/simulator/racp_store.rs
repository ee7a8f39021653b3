//! A device's stored records and its Record Access Control Point (0x2A52): the one RACP
//! implementation behind both simulator targets (hal's in-process device and BlueZ).
//!
//! Records are keyed by sequence number (Glucose) or time offset (CGM), the key RACP's
//! filter type 0x01 addresses. Supported: all / ≤ / ≥ / within range / first / last, for
//! report, delete, count and abort.

use std::collections::BTreeMap;

use crate::decode::gatt::racp::{
    self, FilterValue, RacpOpCode, RacpOperator, RacpResponse, RacpResponseCode,
};

/// Where a RACP answer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RacpOutput {
    /// A stored record, notified on the profile's measurement characteristic.
    Record(Vec<u8>),
    /// An indication on the control point itself.
    ControlPoint(Vec<u8>),
}

#[derive(Debug, Clone, Default)]
pub struct RecordStore {
    records: BTreeMap<u16, Vec<u8>>,
}

impl RecordStore {
    pub fn insert(&mut self, key: u16, bytes: Vec<u8>) {
        self.records.insert(key, bytes);
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn keys(&self) -> Vec<u16> {
        self.records.keys().copied().collect()
    }

    /// Answers one control-point write.
    pub fn answer(&mut self, request: &[u8]) -> Vec<RacpOutput> {
        let op = request.first().copied().unwrap_or(0);
        let code = |code| {
            RacpOutput::ControlPoint(racp::encode_response(&RacpResponse::ResponseCode {
                request_op_code: op,
                code,
            }))
        };
        let Ok(req) = racp::decode_request(request) else {
            return vec![code(RacpResponseCode::InvalidOperator)];
        };
        let keys = self.records.keys().copied();
        let chosen: Vec<u16> = match req.operator {
            RacpOperator::All => keys.collect(),
            RacpOperator::GreaterOrEqual(FilterValue::Sequence(s)) => {
                keys.filter(|k| *k >= s).collect()
            }
            RacpOperator::LessOrEqual(FilterValue::Sequence(s)) => {
                keys.filter(|k| *k <= s).collect()
            }
            RacpOperator::WithinRange(FilterValue::Sequence(a), FilterValue::Sequence(b)) => {
                keys.filter(|k| (a..=b).contains(k)).collect()
            }
            RacpOperator::First => keys.take(1).collect(),
            RacpOperator::Last => keys.last().into_iter().collect(),
            RacpOperator::Null if req.op_code == RacpOpCode::Abort => Vec::new(),
            _ => return vec![code(RacpResponseCode::OperatorNotSupported)],
        };
        match req.op_code {
            RacpOpCode::ReportNumberOfRecords => vec![RacpOutput::ControlPoint(
                racp::encode_response(&RacpResponse::NumberOfRecords {
                    count: u16::try_from(chosen.len()).unwrap_or(u16::MAX),
                }),
            )],
            RacpOpCode::Abort => vec![code(RacpResponseCode::Success)],
            _ if chosen.is_empty() => vec![code(RacpResponseCode::NoRecordsFound)],
            RacpOpCode::ReportStoredRecords => {
                let mut out: Vec<RacpOutput> = chosen
                    .iter()
                    .filter_map(|k| self.records.get(k).cloned().map(RacpOutput::Record))
                    .collect();
                out.push(code(RacpResponseCode::Success));
                out
            }
            RacpOpCode::DeleteStoredRecords => {
                for k in &chosen {
                    self.records.remove(k);
                }
                vec![code(RacpResponseCode::Success)]
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::gatt::racp::RacpRequest;

    fn request(op_code: RacpOpCode, operator: RacpOperator) -> Vec<u8> {
        racp::encode_request(&RacpRequest { op_code, operator }).expect("encodable")
    }

    #[test]
    fn reports_counts_and_deletes_by_sequence() {
        let mut store = RecordStore::default();
        for k in 1..=5u16 {
            store.insert(k, vec![k as u8]);
        }
        let out = store.answer(&request(
            RacpOpCode::ReportStoredRecords,
            RacpOperator::GreaterOrEqual(FilterValue::Sequence(4)),
        ));
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], RacpOutput::Record(vec![4]));
        assert_eq!(out[1], RacpOutput::Record(vec![5]));
        let RacpOutput::ControlPoint(last) = &out[2] else {
            panic!("response code last");
        };
        assert_eq!(
            racp::decode_response(last).expect("decodes"),
            RacpResponse::ResponseCode {
                request_op_code: 1,
                code: RacpResponseCode::Success
            }
        );
        let out = store.answer(&request(
            RacpOpCode::ReportNumberOfRecords,
            RacpOperator::All,
        ));
        let RacpOutput::ControlPoint(count) = &out[0] else {
            panic!("count");
        };
        assert_eq!(
            racp::decode_response(count).expect("decodes"),
            RacpResponse::NumberOfRecords { count: 5 }
        );
        store.answer(&request(
            RacpOpCode::DeleteStoredRecords,
            RacpOperator::LessOrEqual(FilterValue::Sequence(3)),
        ));
        assert_eq!(store.keys(), vec![4, 5]);
        let out = store.answer(&request(
            RacpOpCode::ReportStoredRecords,
            RacpOperator::LessOrEqual(FilterValue::Sequence(2)),
        ));
        let RacpOutput::ControlPoint(none) = &out[0] else {
            panic!("no records");
        };
        assert_eq!(
            racp::decode_response(none).expect("decodes"),
            RacpResponse::ResponseCode {
                request_op_code: 1,
                code: RacpResponseCode::NoRecordsFound
            }
        );
        assert_eq!(
            store.answer(&[0xEE]).len(),
            1,
            "garbage gets an error response"
        );
    }
}
