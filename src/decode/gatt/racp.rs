//! Record Access Control Point (0x2A52), used by the Glucose and CGM services to fetch and
//! delete stored records.
//!
//! Request: op code u8, operator u8, then (for ≤, ≥, within range) a filter type u8 (0x01
//! sequence number for Glucose / time offset for CGM, 0x02 user facing time) and one or two
//! operands (u16 for filter 0x01, Date Time for 0x02). Responses: op 5 "number of stored
//! records" (operator null, u16 count) and op 6 "response code" (operator null, request op
//! code u8, response value u8).

use serde::{Deserialize, Serialize};

use crate::decode::bytes::{Reader, Writer};
use crate::decode::{DecodeError, EncodeError};
use crate::reading::DeviceTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RacpOpCode {
    ReportStoredRecords = 1,
    DeleteStoredRecords = 2,
    Abort = 3,
    ReportNumberOfRecords = 4,
}

/// One operand value of a filtered request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "filter", content = "value")]
pub enum FilterValue {
    /// Filter type 0x01: sequence number (Glucose) or time offset (CGM).
    Sequence(u16),
    /// Filter type 0x02: user facing time.
    UserFacingTime(DeviceTime),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "operator", content = "operand")]
pub enum RacpOperator {
    Null,
    All,
    LessOrEqual(FilterValue),
    GreaterOrEqual(FilterValue),
    /// Both bounds use the same filter type.
    WithinRange(FilterValue, FilterValue),
    First,
    Last,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RacpRequest {
    pub op_code: RacpOpCode,
    pub operator: RacpOperator,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RacpResponseCode {
    Success = 1,
    OpCodeNotSupported = 2,
    InvalidOperator = 3,
    OperatorNotSupported = 4,
    InvalidOperand = 5,
    NoRecordsFound = 6,
    AbortUnsuccessful = 7,
    ProcedureNotCompleted = 8,
    OperandNotSupported = 9,
}

impl RacpResponseCode {
    const ALL: [RacpResponseCode; 9] = [
        RacpResponseCode::Success,
        RacpResponseCode::OpCodeNotSupported,
        RacpResponseCode::InvalidOperator,
        RacpResponseCode::OperatorNotSupported,
        RacpResponseCode::InvalidOperand,
        RacpResponseCode::NoRecordsFound,
        RacpResponseCode::AbortUnsuccessful,
        RacpResponseCode::ProcedureNotCompleted,
        RacpResponseCode::OperandNotSupported,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "response")]
pub enum RacpResponse {
    NumberOfRecords {
        count: u16,
    },
    ResponseCode {
        /// The request op code this answers (any value a device echoes, even unsupported).
        request_op_code: u8,
        code: RacpResponseCode,
    },
}

fn op_code(field: &'static str, offset: usize, v: u8) -> Result<RacpOpCode, DecodeError> {
    Ok(match v {
        1 => RacpOpCode::ReportStoredRecords,
        2 => RacpOpCode::DeleteStoredRecords,
        3 => RacpOpCode::Abort,
        4 => RacpOpCode::ReportNumberOfRecords,
        _ => {
            return Err(DecodeError::Reserved {
                field,
                offset,
                value: u32::from(v),
            });
        }
    })
}

fn read_filter_value(r: &mut Reader<'_>, filter_type: u8) -> Result<FilterValue, DecodeError> {
    Ok(match filter_type {
        0x01 => FilterValue::Sequence(r.u16("operand")?),
        _ => FilterValue::UserFacingTime(r.date_time("operand")?),
    })
}

pub fn decode_request(bytes: &[u8]) -> Result<RacpRequest, DecodeError> {
    let mut r = Reader::new(bytes);
    let op = op_code("op code", 0, r.u8("op code")?)?;
    let operator_raw = r.u8("operator")?;
    let operator = match operator_raw {
        0 => RacpOperator::Null,
        1 => RacpOperator::All,
        5 => RacpOperator::First,
        6 => RacpOperator::Last,
        2..=4 => {
            let offset = r.offset();
            let filter_type = r.u8("filter type")?;
            if !(0x01..=0x02).contains(&filter_type) {
                return Err(DecodeError::Reserved {
                    field: "filter type",
                    offset,
                    value: u32::from(filter_type),
                });
            }
            let first = read_filter_value(&mut r, filter_type)?;
            match operator_raw {
                2 => RacpOperator::LessOrEqual(first),
                3 => RacpOperator::GreaterOrEqual(first),
                _ => RacpOperator::WithinRange(first, read_filter_value(&mut r, filter_type)?),
            }
        }
        other => {
            return Err(DecodeError::Reserved {
                field: "operator",
                offset: 1,
                value: u32::from(other),
            });
        }
    };
    r.finish("RACP request")?;
    Ok(RacpRequest {
        op_code: op,
        operator,
    })
}

fn write_filter_value(w: &mut Writer, v: &FilterValue) {
    match v {
        FilterValue::Sequence(s) => w.u16(*s),
        FilterValue::UserFacingTime(t) => w.date_time(t),
    }
}

fn filter_type(v: &FilterValue) -> u8 {
    match v {
        FilterValue::Sequence(_) => 0x01,
        FilterValue::UserFacingTime(_) => 0x02,
    }
}

pub fn encode_request(req: &RacpRequest) -> Result<Vec<u8>, EncodeError> {
    let mut w = Writer::new();
    w.u8(req.op_code as u8);
    match &req.operator {
        RacpOperator::Null => w.u8(0),
        RacpOperator::All => w.u8(1),
        RacpOperator::First => w.u8(5),
        RacpOperator::Last => w.u8(6),
        RacpOperator::LessOrEqual(v) | RacpOperator::GreaterOrEqual(v) => {
            w.u8(if matches!(req.operator, RacpOperator::LessOrEqual(_)) {
                2
            } else {
                3
            });
            w.u8(filter_type(v));
            write_filter_value(&mut w, v);
        }
        RacpOperator::WithinRange(a, b) => {
            if filter_type(a) != filter_type(b) {
                return Err(EncodeError::OutOfRange {
                    field: "operand",
                    reason: "both bounds of a range must use the same filter type",
                });
            }
            w.u8(4);
            w.u8(filter_type(a));
            write_filter_value(&mut w, a);
            write_filter_value(&mut w, b);
        }
    }
    Ok(w.into_bytes())
}

pub fn decode_response(bytes: &[u8]) -> Result<RacpResponse, DecodeError> {
    let mut r = Reader::new(bytes);
    let op = r.u8("op code")?;
    let operator = r.u8("operator")?;
    if operator != 0 {
        return Err(DecodeError::Invalid {
            field: "operator",
            offset: 1,
            value: u32::from(operator),
            reason: "responses use the null operator",
        });
    }
    let response = match op {
        5 => RacpResponse::NumberOfRecords {
            count: r.u16("number of records")?,
        },
        6 => {
            let request_op_code = r.u8("request op code")?;
            let offset = r.offset();
            let v = r.u8("response code value")?;
            let code = match v {
                1..=9 => RacpResponseCode::ALL[usize::from(v - 1)],
                _ => {
                    return Err(DecodeError::Reserved {
                        field: "response code value",
                        offset,
                        value: u32::from(v),
                    });
                }
            };
            RacpResponse::ResponseCode {
                request_op_code,
                code,
            }
        }
        other => {
            return Err(DecodeError::Invalid {
                field: "op code",
                offset: 0,
                value: u32::from(other),
                reason: "not a response op code (5 or 6)",
            });
        }
    };
    r.finish("RACP response")?;
    Ok(response)
}

pub fn encode_response(resp: &RacpResponse) -> Vec<u8> {
    let mut w = Writer::new();
    match resp {
        RacpResponse::NumberOfRecords { count } => {
            w.u8(5);
            w.u8(0);
            w.u16(*count);
        }
        RacpResponse::ResponseCode {
            request_op_code,
            code,
        } => {
            w.u8(6);
            w.u8(0);
            w.u8(*request_op_code);
            w.u8(*code as u8);
        }
    }
    w.into_bytes()
}
