//! The platform's SMS senders, for tenants that bring no number of their
//! own: per country, long codes (E.164) or an alphanumeric sender id where
//! the country allows one. Set by `BUSFLOW_SMS_POOL`, e.g.
//! `MX=+525500000100|+525500000101,US=+18445550100,ES=Busflow`.
//!
//! A tenant is given one sender of its country's list, the same one every
//! time (chosen by the tenant id), and its sends through it are counted
//! against the platform's per-tenant daily limit.

use crate::model::TenantId;
use std::collections::BTreeMap;

/// One platform sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformSender {
    /// An origination number, E.164.
    Number(String),
    /// An alphanumeric sender id (1 to 11 letters and digits, one letter at least).
    SenderId(String),
}

/// The pool, by ISO 3166 country code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SmsPool {
    by_country: BTreeMap<String, Vec<PlatformSender>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmsPoolError {
    #[error("BUSFLOW_SMS_POOL entry '{0}' is not COUNTRY=sender[|sender…]")]
    Entry(String),
    #[error(
        "BUSFLOW_SMS_POOL sender '{0}' is neither an E.164 number (+ and 8 to 15 digits) nor a sender id (1 to 11 letters and digits)"
    )]
    Sender(String),
    #[error("BUSFLOW_SMS_POOL names country '{0}' twice")]
    Twice(String),
}

impl SmsPool {
    /// Parses `COUNTRY=sender|sender,COUNTRY=sender`; empty is an empty pool.
    pub fn parse(spec: &str) -> Result<Self, SmsPoolError> {
        let mut by_country = BTreeMap::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (country, senders) = entry
                .split_once('=')
                .ok_or_else(|| SmsPoolError::Entry(entry.to_owned()))?;
            let country = country.trim().to_ascii_uppercase();
            if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(SmsPoolError::Entry(entry.to_owned()));
            }
            let senders = senders
                .split('|')
                .map(|s| sender(s.trim()))
                .collect::<Result<Vec<_>, _>>()?;
            if senders.is_empty() {
                return Err(SmsPoolError::Entry(entry.to_owned()));
            }
            if by_country.insert(country.clone(), senders).is_some() {
                return Err(SmsPoolError::Twice(country));
            }
        }
        Ok(Self { by_country })
    }

    /// The sender the tenant gets in `country`: always the same one.
    pub fn sender_for(&self, country: &str, tenant: TenantId) -> Option<&PlatformSender> {
        let senders = self.by_country.get(&country.to_ascii_uppercase())?;
        let spread = tenant.0.as_u128() % senders.len() as u128;
        senders.get(usize::try_from(spread).unwrap_or(0))
    }

    /// The countries the pool serves.
    pub fn countries(&self) -> Vec<&str> {
        self.by_country.keys().map(String::as_str).collect()
    }
}

fn sender(text: &str) -> Result<PlatformSender, SmsPoolError> {
    if let Some(digits) = text.strip_prefix('+') {
        if (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(PlatformSender::Number(text.to_owned()));
        }
    } else if (1..=11).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_alphanumeric())
        && text.bytes().any(|b| b.is_ascii_alphabetic())
    {
        return Ok(PlatformSender::SenderId(text.to_owned()));
    }
    Err(SmsPoolError::Sender(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    #[test]
    fn numbers_and_sender_ids_are_read_per_country() {
        let pool = SmsPool::parse("mx=+525500000100|+525500000101, ES=Busflow").expect("pool");
        assert_eq!(pool.countries(), ["ES", "MX"]);
        let tenant = TenantId(Uuid::new_v4());
        assert_eq!(
            pool.sender_for("es", tenant),
            Some(&PlatformSender::SenderId("Busflow".into()))
        );
        let mx = pool.sender_for("MX", tenant).expect("a Mexican number");
        assert_eq!(
            pool.sender_for("MX", tenant),
            Some(mx),
            "always the same one"
        );
        assert_eq!(pool.sender_for("US", tenant), None);
    }

    #[test]
    fn a_malformed_pool_is_refused_naming_the_entry() {
        assert_eq!(
            SmsPool::parse("MX+525500000100"),
            Err(SmsPoolError::Entry("MX+525500000100".into()))
        );
        assert_eq!(
            SmsPool::parse("MX=5500000100"),
            Err(SmsPoolError::Sender("5500000100".into()))
        );
        assert_eq!(
            SmsPool::parse("MX=+525500000100,MX=+525500000101"),
            Err(SmsPoolError::Twice("MX".into()))
        );
        assert_eq!(SmsPool::parse(""), Ok(SmsPool::default()));
    }
}
