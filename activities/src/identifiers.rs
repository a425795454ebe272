//! Contact identifiers that parse, not validate: once an `EmailAddress` or a
//! `PhoneNumber` exists it is in its normalized form (lower-case email, E.164
//! phone), so lookups and unique keys compare like with like.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an identifier was refused. The message names the offending value's
/// kind, never the value (it is personal data).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentifierError {
    #[error("email address is not valid: {0}")]
    Email(&'static str),
    #[error("phone number is not valid: {0}")]
    Phone(&'static str),
    #[error("region '{0}' is not an ISO 3166 country code")]
    Region(String),
}

/// A lower-cased email address with one `@` and a dotted domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err(IdentifierError::Email("empty"));
        }
        if email.len() > 254 {
            return Err(IdentifierError::Email("longer than 254 characters"));
        }
        if email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdentifierError::Email("contains white space"));
        }
        let (local, domain) = email
            .split_once('@')
            .ok_or(IdentifierError::Email("missing '@'"))?;
        if local.is_empty() || domain.contains('@') {
            return Err(IdentifierError::Email(
                "needs exactly one '@' after a local part",
            ));
        }
        let labels_ok = domain
            .split('.')
            .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        if !domain.contains('.') || !labels_ok {
            return Err(IdentifierError::Email("domain is not a dotted host name"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part after `@`.
    pub fn domain(&self) -> &str {
        self.0.rsplit_once('@').map(|(_, d)| d).unwrap_or_default()
    }
}

impl TryFrom<String> for EmailAddress {
    type Error = IdentifierError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<EmailAddress> for String {
    fn from(email: EmailAddress) -> Self {
        email.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A phone number in E.164 form (`+` and 8 to 15 digits), checked against the
/// numbering plan of its country.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Reads an international (`+52…`, `0052…`) or national number; a national
    /// number is read in `default_region` (ISO 3166 alpha-2, e.g. "MX").
    pub fn parse(raw: &str, default_region: &str) -> Result<Self, IdentifierError> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(IdentifierError::Phone("empty"));
        }
        let region: phonenumber::country::Id = default_region
            .parse()
            .map_err(|_| IdentifierError::Region(default_region.to_owned()))?;
        let international = trimmed
            .strip_prefix("00")
            .map(|rest| format!("+{rest}"))
            .unwrap_or_else(|| trimmed.to_owned());
        let number = phonenumber::parse(Some(region), &international)
            .map_err(|_| IdentifierError::Phone("not a phone number"))?;
        if !phonenumber::is_valid(&number) {
            return Err(IdentifierError::Phone("not a valid number for its country"));
        }
        Ok(Self(
            number.format().mode(phonenumber::Mode::E164).to_string(),
        ))
    }

    /// Accepts only a number that is already E.164 (no region guessing).
    pub fn parse_e164(raw: &str) -> Result<Self, IdentifierError> {
        if !raw.starts_with('+') {
            return Err(IdentifierError::Phone("must start with '+'"));
        }
        // The region is irrelevant for an international number.
        Self::parse(raw, "US")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = IdentifierError;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse_e164(&raw)
    }
}

impl From<PhoneNumber> for String {
    fn from(phone: PhoneNumber) -> Self {
        phone.0
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lower_cased_and_trimmed() {
        let email = EmailAddress::parse("  Ana.Lopez@Example.COM ").expect("valid");
        assert_eq!(email.as_str(), "ana.lopez@example.com");
        assert_eq!(email.domain(), "example.com");
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@localhost",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(
                EmailAddress::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn national_and_international_phones_become_e164() {
        let mx = "+525512345678";
        assert_eq!(
            PhoneNumber::parse("55 1234 5678", "MX")
                .expect("national")
                .as_str(),
            mx
        );
        assert_eq!(
            PhoneNumber::parse("+52 (55) 1234-5678", "MX")
                .expect("intl")
                .as_str(),
            mx
        );
        assert_eq!(
            PhoneNumber::parse("0052 55 1234 5678", "US")
                .expect("00 prefix")
                .as_str(),
            mx
        );
        assert_eq!(
            PhoneNumber::parse("07911 123456", "GB")
                .expect("trunk prefix")
                .as_str(),
            "+447911123456"
        );
    }

    #[test]
    fn impossible_phones_are_refused() {
        assert!(PhoneNumber::parse("12", "MX").is_err());
        assert!(PhoneNumber::parse("call me", "MX").is_err());
        assert!(PhoneNumber::parse_e164("5512345678").is_err());
        assert!(matches!(
            PhoneNumber::parse("5512345678", "Mexico"),
            Err(IdentifierError::Region(_))
        ));
    }
}
