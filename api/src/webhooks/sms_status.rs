//! `POST /webhooks/sms-status`: SMS delivery receipts.
//!
//! SNS has no per-message HTTP callback for SMS. Its delivery-status logging
//! writes one record per message to CloudWatch Logs
//! (`sns/<region>/<account>/DirectPublishToPhoneNumber[/Failure]`); a Logs
//! subscription filter sends them to a Kinesis Data Firehose stream whose
//! destination is this HTTP endpoint (see README, "SMS delivery receipts").
//! Firehose authenticates with the access key configured on the destination
//! (`X-Amz-Firehose-Access-Key`, compared in constant time) and posts
//! batches of base64 records; CloudWatch Logs records are gzip-compressed
//! `DATA_MESSAGE`s whose log events are the SNS delivery records. Records
//! already decompressed by Firehose are accepted as well.
//!
//! Bounds: at most [`MAX_RECORDS`] records a delivery, each at most
//! [`MAX_RECORD_BYTES`] once decoded and decompressed, and at most
//! [`MAX_DELIVERY_BYTES`] decoded in all (the body itself is bounded by the
//! route). Beyond, the delivery is refused 413 naming the bound, before
//! anything is applied; Firehose retries it and finally backs it up to S3,
//! so nothing is lost. A CloudWatch Logs record holds at most 1 MiB of log
//! events, and Firehose buffers at most 5 MiB by default.

use super::delivery;
use crate::AppState;
use crate::error::{ApiError, parse_json};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use busflow_activities::model::{Channel, MessageStatus};
use busflow_activities::store::messages::DeliveryCallback;
use serde::Deserialize;
use serde_json::{Value, json};
use std::io::Read;
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const ACCESS_KEY_HEADER: &str = "x-amz-firehose-access-key";

/// Records one delivery may carry.
pub const MAX_RECORDS: usize = 10_000;
/// One record's bytes, decoded and decompressed.
pub const MAX_RECORD_BYTES: usize = 2 * 1024 * 1024;
/// A delivery's bytes, decoded and decompressed, all records together.
pub const MAX_DELIVERY_BYTES: usize = 32 * 1024 * 1024;

/// A Kinesis Data Firehose HTTP endpoint delivery.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
struct FirehoseRequest {
    request_id: String,
    #[serde(default)]
    records: Vec<FirehoseRecord>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct FirehoseRecord {
    /// Base64 of a CloudWatch Logs record (gzip) whose log events are SNS
    /// SMS delivery-status records, or of one such record.
    data: String,
}

#[utoipa::path(
    post,
    path = "/webhooks/sms-status",
    tag = "providers",
    request_body = FirehoseRequest,
    params(("X-Amz-Firehose-Access-Key" = String, Header, description = "The access key of the Firehose destination (BUSFLOW_FIREHOSE_ACCESS_KEY)")),
    responses(
        (status = 200, description = "Firehose's answer: `requestId` echoed, `timestamp`, and the receipts applied", body = Object),
        (status = 400, description = "INVALID_PAYLOAD, INVALID_RECORD (names the record)", body = crate::openapi::ApiErrorBody),
        (status = 401, description = "UNAUTHORIZED: the access key is missing or wrong", body = crate::openapi::ApiErrorBody),
        (status = 404, description = "NOT_CONFIGURED: no access key is set", body = crate::openapi::ApiErrorBody),
        (status = 413, description = "TOO_MANY_RECORDS, RECORD_TOO_LARGE, DELIVERY_TOO_LARGE: refused whole; Firehose retries, then backs it up", body = crate::openapi::ApiErrorBody),
    )
)]
pub async fn receive(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let Some(expected) = app
        .config
        .firehose_access_key
        .as_deref()
        .filter(|k| !k.is_empty())
    else {
        return Err(ApiError::client(
            StatusCode::NOT_FOUND,
            "NOT_CONFIGURED",
            "SMS delivery receipts are not configured (BUSFLOW_FIREHOSE_ACCESS_KEY)",
        ));
    };
    let presented = headers
        .get(ACCESS_KEY_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !bool::from(presented.ct_eq(expected.as_bytes())) {
        return Err(ApiError::unauthorized(format!(
            "missing or wrong {ACCESS_KEY_HEADER}"
        )));
    }
    let request: FirehoseRequest = parse_json(&body)?;
    if request.records.len() > MAX_RECORDS {
        return Err(too_large(
            "TOO_MANY_RECORDS",
            format!(
                "{} records in one delivery; at most {MAX_RECORDS}",
                request.records.len()
            ),
        ));
    }
    let mut receipts = Vec::new();
    let mut decoded_bytes = 0usize;
    for (index, record) in request.records.iter().enumerate() {
        let (decoded, size) = decode_record(&record.data).map_err(|problem| match problem {
            RecordProblem::TooLarge => too_large(
                "RECORD_TOO_LARGE",
                format!("record {index} is larger than {MAX_RECORD_BYTES} bytes decoded"),
            ),
            RecordProblem::Unreadable(reason) => {
                ApiError::bad_request("INVALID_RECORD", format!("record {index}: {reason}"))
            }
        })?;
        decoded_bytes += size;
        if decoded_bytes > MAX_DELIVERY_BYTES {
            return Err(too_large(
                "DELIVERY_TOO_LARGE",
                format!("the records are larger than {MAX_DELIVERY_BYTES} bytes decoded in all"),
            ));
        }
        receipts.extend(delivery_records(&decoded));
    }
    let mut applied = 0usize;
    for receipt in &receipts {
        if let Some(callback) = receipt.to_callback() {
            delivery::apply(&app, &callback).await?;
            applied += 1;
        }
    }
    // Firehose's success response echoes the request id.
    Ok(Json(json!({
        "requestId": request.request_id,
        "timestamp": chrono::Utc::now().timestamp_millis(),
        "receipts": applied,
    })))
}

fn too_large(code: &'static str, message: String) -> ApiError {
    ApiError::client(StatusCode::PAYLOAD_TOO_LARGE, code, message)
}

/// Why a record could not be read.
#[derive(Debug)]
enum RecordProblem {
    TooLarge,
    Unreadable(String),
}

/// base64 → (gunzip when compressed) → JSON, with its decoded size; a record
/// over [`MAX_RECORD_BYTES`] is not decompressed further.
fn decode_record(data: &str) -> Result<(Value, usize), RecordProblem> {
    let bytes = B64
        .decode(data.trim())
        .map_err(|_| RecordProblem::Unreadable("data is not base64".to_owned()))?;
    let json_bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_RECORD_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| RecordProblem::Unreadable("data is not valid gzip".to_owned()))?;
        out
    } else {
        bytes
    };
    if json_bytes.len() > MAX_RECORD_BYTES {
        return Err(RecordProblem::TooLarge);
    }
    let size = json_bytes.len();
    serde_json::from_slice(&json_bytes)
        .map(|value| (value, size))
        .map_err(|e| RecordProblem::Unreadable(format!("data is not JSON: {e}")))
}

/// The SNS delivery records inside one decoded Firehose record: a CloudWatch
/// Logs `DATA_MESSAGE` (control messages carry none), or one record as is.
fn delivery_records(decoded: &Value) -> Vec<SmsDeliveryRecord> {
    match decoded.get("messageType").and_then(Value::as_str) {
        Some("DATA_MESSAGE") => decoded
            .get("logEvents")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|event| event.get("message").and_then(Value::as_str))
            .filter_map(|message| serde_json::from_str(message).ok())
            .collect(),
        Some(_) => Vec::new(),
        None => serde_json::from_value(decoded.clone())
            .into_iter()
            .collect(),
    }
}

/// One SNS SMS delivery-status log record.
#[derive(Debug, Deserialize)]
struct SmsDeliveryRecord {
    notification: Notification,
    #[serde(default)]
    delivery: Option<Delivery>,
    status: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Notification {
    message_id: String,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    #[serde(default)]
    provider_response: Option<String>,
}

impl SmsDeliveryRecord {
    fn to_callback(&self) -> Option<DeliveryCallback> {
        let response = self
            .delivery
            .as_ref()
            .and_then(|d| d.provider_response.clone())
            .unwrap_or_else(|| "no provider response".to_owned());
        let (status, reason) = match self.status.as_str() {
            "SUCCESS" => (MessageStatus::Delivered, None),
            "FAILURE" => (
                MessageStatus::Failed,
                Some(format!("SMS not delivered: {response}")),
            ),
            _ => return None,
        };
        let occurred_at = self
            .notification
            .timestamp
            .as_deref()
            .and_then(|t| {
                chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f")
                    .map(|n| n.and_utc())
                    .ok()
                    .or_else(|| {
                        chrono::DateTime::parse_from_rfc3339(t)
                            .ok()
                            .map(|t| t.with_timezone(&chrono::Utc))
                    })
            })
            .unwrap_or_else(chrono::Utc::now);
        Some(DeliveryCallback {
            tenant_id: None,
            channel: Channel::Sms,
            external_message_id: self.notification.message_id.clone(),
            status,
            reason,
            occurred_at,
            detail: json!({"status": self.status, "providerResponse": response}),
            correlation: None,
            configuration_set: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(value: &Value) -> String {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(value.to_string().as_bytes())
            .expect("gzip");
        B64.encode(encoder.finish().expect("gzip"))
    }

    #[test]
    fn cloudwatch_logs_batches_yield_their_sns_delivery_records() {
        let record = json!({"notification": {"messageId": "sms-1", "timestamp": "2026-11-27 10:00:00.123"},
                            "delivery": {"destination": "+525512345678", "providerResponse": "Phone carrier has accepted the message"},
                            "status": "SUCCESS"});
        let batch = json!({"messageType": "DATA_MESSAGE", "logGroup": "sns/us-east-1/123/DirectPublishToPhoneNumber",
                           "logEvents": [{"id": "1", "timestamp": 1, "message": record.to_string()}]});
        let (decoded, _) = decode_record(&gzip(&batch)).expect("decodes");
        let records = delivery_records(&decoded);
        assert_eq!(records.len(), 1);
        let callback = records[0].to_callback().expect("tracked");
        assert_eq!(
            (callback.status, callback.external_message_id.as_str()),
            (MessageStatus::Delivered, "sms-1")
        );

        let control = json!({"messageType": "CONTROL_MESSAGE", "logEvents": []});
        assert!(delivery_records(&decode_record(&gzip(&control)).expect("decodes").0).is_empty());
    }

    #[test]
    fn a_failure_keeps_the_carrier_response() {
        let plain = B64.encode(json!({"notification": {"messageId": "sms-2"},
            "delivery": {"providerResponse": "Unknown error attempting to reach phone"}, "status": "FAILURE"}).to_string());
        let records = delivery_records(&decode_record(&plain).expect("plain JSON record").0);
        let callback = records[0].to_callback().expect("tracked");
        assert_eq!(callback.status, MessageStatus::Failed);
        assert_eq!(
            callback.reason.as_deref(),
            Some("SMS not delivered: Unknown error attempting to reach phone")
        );
        assert!(decode_record("!!!").is_err());
    }

    #[test]
    fn a_gzip_bomb_is_not_decompressed_past_the_record_bound() {
        // 64 MiB of zeros compress to about 64 KiB.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b'0'; 1024 * 1024];
        for _ in 0..64 {
            encoder.write_all(&zeros).expect("gzip");
        }
        let bomb = B64.encode(encoder.finish().expect("gzip"));
        assert!(bomb.len() < 1024 * 1024);
        assert!(matches!(decode_record(&bomb), Err(RecordProblem::TooLarge)));
    }
}
