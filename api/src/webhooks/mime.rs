//! A minimal MIME reader for inbound email: finds the text a person wrote
//! and lists what was attached, nothing more. It never fails — mail in the
//! wild is often slightly malformed, and an agent is better served by a
//! best-effort text than by a dropped message.
//!
//! Policy:
//! - Headers are unfolded; RFC 2047 encoded words (`=?utf-8?Q?…?=`, `B`) are
//!   decoded where a person's text lives (subject, display names).
//! - `multipart/*` is split on its boundary (nested up to [`MAX_DEPTH`]).
//!   The body is the first inline `text/plain` part; without one, the first
//!   inline `text/html` part reduced to text. Everything else — parts with
//!   `Content-Disposition: attachment`, other media types, attached
//!   `message/rfc822` — is listed as an attachment (name, type, size), not
//!   decoded further.
//! - Transfer encodings: `quoted-printable` (soft line breaks, `=XX`),
//!   `base64` (lenient about white space and padding), `7bit`/`8bit`/`binary`
//!   as they are. Charsets: UTF-8, US-ASCII, ISO-8859-1, ISO-8859-15 and
//!   windows-1252; anything else is read as UTF-8, invalid bytes replaced.
//! - `format=flowed` text (RFC 3676) is unwrapped; line ends become `\n`.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// How deep multiparts may nest before the rest is ignored.
pub const MAX_DEPTH: usize = 8;

/// What a person sent, read from the raw message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadMail {
    /// The readable text (empty when the message has none).
    pub text: String,
    /// Parts that are not the text, in message order.
    pub attachments: Vec<Attachment>,
}

/// A part that is not the message's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: Option<String>,
    /// Lower-case media type, e.g. `application/pdf`.
    pub content_type: String,
    /// Decoded size in bytes.
    pub size: usize,
}

/// One MIME entity: its unfolded headers and its still-encoded body.
#[derive(Debug, Clone)]
pub struct Entity<'a> {
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl<'a> Entity<'a> {
    /// Splits `raw` at the first empty line into headers and body.
    pub fn parse(raw: &'a [u8]) -> Self {
        let (head, body) = split_head(raw);
        Self {
            headers: unfold_headers(head),
            body,
        }
    }

    /// The first header called `name` (any case), unfolded, raw (not
    /// RFC 2047-decoded).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_type(&self) -> HeaderValue {
        self.header("content-type")
            .map(HeaderValue::parse)
            .filter(|ct| ct.value.contains('/'))
            .unwrap_or_else(|| HeaderValue::parse("text/plain; charset=us-ascii"))
    }

    fn is_attachment(&self) -> bool {
        self.header("content-disposition")
            .map(HeaderValue::parse)
            .is_some_and(|d| d.value == "attachment")
    }

    fn filename(&self) -> Option<String> {
        self.header("content-disposition")
            .map(HeaderValue::parse)
            .and_then(|d| d.param("filename").map(str::to_owned))
            .or_else(|| self.content_type().param("name").map(str::to_owned))
            .map(|name| decode_words(&name))
    }

    /// The body with its transfer encoding undone.
    fn decoded_body(&self) -> Vec<u8> {
        let encoding = self
            .header("content-transfer-encoding")
            .map(|e| e.trim().to_ascii_lowercase())
            .unwrap_or_default();
        match encoding.as_str() {
            "quoted-printable" => decode_quoted_printable(self.body),
            "base64" => decode_base64(self.body),
            _ => self.body.to_vec(),
        }
    }
}

/// Reads the text and the attachments of the raw message `raw`.
pub fn read(raw: &[u8]) -> ReadMail {
    let mut found = Found::default();
    walk(&Entity::parse(raw), 0, &mut found);
    let text = match (found.plain, found.html) {
        (Some(plain), _) => plain,
        (None, Some(html)) => html_to_text(&html),
        (None, None) => String::new(),
    };
    ReadMail {
        text: tidy(&text),
        attachments: found.attachments,
    }
}

#[derive(Default)]
struct Found {
    plain: Option<String>,
    html: Option<String>,
    attachments: Vec<Attachment>,
}

fn walk(entity: &Entity<'_>, depth: usize, found: &mut Found) {
    let content_type = entity.content_type();
    let mime = content_type.value.as_str();
    if mime.starts_with("multipart/")
        && depth < MAX_DEPTH
        && let Some(boundary) = content_type.param("boundary")
    {
        for part in split_multipart(entity.body, boundary) {
            walk(&Entity::parse(part), depth + 1, found);
        }
        return;
    }
    let inline_text = !entity.is_attachment() && matches!(mime, "text/plain" | "text/html");
    if !inline_text {
        found.attachments.push(Attachment {
            filename: entity.filename(),
            content_type: mime.to_owned(),
            size: entity.decoded_body().len(),
        });
        return;
    }
    let slot = if mime == "text/plain" {
        &mut found.plain
    } else {
        &mut found.html
    };
    if slot.is_some() {
        return;
    }
    let charset = content_type.param("charset").unwrap_or("us-ascii");
    let mut text = decode_charset(&entity.decoded_body(), charset);
    if mime == "text/plain" && content_type.param("format") == Some("flowed") {
        text = unflow(&text, content_type.param("delsp") == Some("yes"));
    }
    *slot = Some(text);
}

/// Header block and body, split at the first empty line (CRLF or LF).
fn split_head(raw: &[u8]) -> (&[u8], &[u8]) {
    if raw.starts_with(b"\r\n") {
        return (&[], &raw[2..]);
    }
    if raw.starts_with(b"\n") {
        return (&[], &raw[1..]);
    }
    let mut i = 0;
    while let Some(offset) = raw[i..].iter().position(|&b| b == b'\n') {
        let nl = i + offset;
        let rest = &raw[nl + 1..];
        if rest.starts_with(b"\r\n") {
            return (&raw[..nl + 1], &rest[2..]);
        }
        if rest.starts_with(b"\n") {
            return (&raw[..nl + 1], &rest[1..]);
        }
        i = nl + 1;
    }
    // No empty line: all header, no body.
    (raw, &[])
}

fn unfold_headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut headers: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(line);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }
    for (_, value) in &mut headers {
        *value = value.trim().to_owned();
    }
    headers
}

/// A structured header value: `value; name=param; name="quoted param"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HeaderValue {
    /// Lower-case.
    value: String,
    /// Names lower-case, values unquoted.
    params: Vec<(String, String)>,
}

impl HeaderValue {
    fn parse(raw: &str) -> Self {
        let mut pieces = split_unquoted(raw, ';').into_iter();
        let value = pieces
            .next()
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let params = pieces
            .filter_map(|piece| {
                let (name, value) = piece.split_once('=')?;
                Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
            })
            .collect();
        Self { value, params }
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits on `separator` outside double quotes.
fn split_unquoted(raw: &str, separator: char) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in raw.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == separator && !quoted => {
                pieces.push(&raw[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    pieces.push(&raw[start..]);
    pieces
}

/// `"a \"b\""` → `a "b"`; an unquoted value as it is.
pub(crate) fn unquote(raw: &str) -> String {
    let Some(inner) = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return raw.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The parts of a multipart body: what lies between `--boundary` lines, up
/// to `--boundary--` (or the end, if the closing line is missing). The
/// preamble and epilogue are dropped; the line break before a delimiter
/// belongs to the delimiter.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut line_start = 0;
    while line_start <= body.len() {
        let line_end = body[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(body.len(), |p| line_start + p);
        let line = &body[line_start..line_end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(delimiter.as_bytes()) {
            let closing = rest.starts_with(b"--");
            let rest = if closing { &rest[2..] } else { rest };
            if rest.iter().all(|b| matches!(b, b' ' | b'\t')) {
                if let Some(start) = part_start {
                    let mut end = line_start;
                    if end > start && body[end - 1] == b'\n' {
                        end -= 1;
                        if end > start && body[end - 1] == b'\r' {
                            end -= 1;
                        }
                    }
                    parts.push(&body[start..end.max(start)]);
                }
                if closing {
                    return parts;
                }
                part_start = Some((line_end + 1).min(body.len()));
            }
        }
        line_start = line_end + 1;
    }
    if let Some(start) = part_start {
        parts.push(&body[start..]);
    }
    parts
}

/// Undoes quoted-printable (RFC 2045 §6.7): `=XX` is a byte, `=` at the end
/// of a line joins it to the next, trailing white space is transport
/// padding. A malformed `=` is kept as it is.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut lines = input.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let end = line
            .iter()
            .rposition(|b| !matches!(b, b' ' | b'\t'))
            .map_or(0, |p| p + 1);
        let line = &line[..end];
        let (line, soft_break) = match line.strip_suffix(b"=") {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let mut i = 0;
        while i < line.len() {
            let byte = line[i];
            if byte == b'='
                && let Some(decoded) = line.get(i + 1..i + 3).and_then(hex_byte)
            {
                out.push(decoded);
                i += 3;
                continue;
            }
            out.push(byte);
            i += 1;
        }
        if !soft_break && lines.peek().is_some() {
            out.push(b'\n');
        }
    }
    out
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}

/// Undoes base64, ignoring line breaks, stray characters and missing
/// padding; a dangling last character is dropped.
pub fn decode_base64(input: &[u8]) -> Vec<u8> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut clean: Vec<u8> = input
        .iter()
        .copied()
        .take_while(|&b| b != b'=')
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/'))
        .collect();
    if clean.len() % 4 == 1 {
        clean.pop();
    }
    LENIENT.decode(&clean).unwrap_or_default()
}

/// Text from bytes in `charset` (see the module policy for which).
pub fn decode_charset(bytes: &[u8], charset: &str) -> String {
    let charset = charset.trim().to_ascii_lowercase().replace('_', "-");
    match charset.as_str() {
        "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" | "cp819" => {
            bytes.iter().map(|&b| char::from(b)).collect()
        }
        "iso-8859-15" | "iso8859-15" | "latin-9" | "latin9" => {
            bytes.iter().map(|&b| latin9(b)).collect()
        }
        "windows-1252" | "cp1252" | "x-cp1252" => bytes.iter().map(|&b| cp1252(b)).collect(),
        _ => String::from_utf8_lossy(bytes).into_owned(),
    }
}

fn latin9(byte: u8) -> char {
    match byte {
        0xA4 => '€',
        0xA6 => 'Š',
        0xA8 => 'š',
        0xB4 => 'Ž',
        0xB8 => 'ž',
        0xBC => 'Œ',
        0xBD => 'œ',
        0xBE => 'Ÿ',
        b => char::from(b),
    }
}

fn cp1252(byte: u8) -> char {
    const HIGH: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8D}', 'Ž',
        '\u{8F}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9D}',
        'ž', 'Ÿ',
    ];
    match byte {
        0x80..=0x9F => HIGH[usize::from(byte - 0x80)],
        b => char::from(b),
    }
}

/// Decodes RFC 2047 encoded words (`=?charset?Q|B?text?=`) in a header
/// value; white space between two encoded words is dropped, as the RFC
/// says. Anything that is not a well-formed encoded word stays as it is.
pub fn decode_words(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    let mut pending_space = String::new();
    let mut after_word = false;
    while !rest.is_empty() {
        if let Some((decoded, consumed)) = encoded_word(rest) {
            if !after_word {
                out.push_str(&pending_space);
            }
            pending_space.clear();
            out.push_str(&decoded);
            rest = &rest[consumed..];
            after_word = true;
            continue;
        }
        let Some(c) = rest.chars().next() else {
            break;
        };
        if c.is_whitespace() {
            pending_space.push(c);
        } else {
            out.push_str(&pending_space);
            pending_space.clear();
            out.push(c);
            after_word = false;
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push_str(&pending_space);
    out
}

/// One encoded word at the start of `s`: the decoded text and how many
/// bytes it took.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (charset, inner) = inner.split_once('?')?;
    let (encoding, inner) = inner.split_once('?')?;
    let end = inner.find("?=")?;
    let text = &inner[..end];
    if text.contains(char::is_whitespace) || charset.is_empty() {
        return None;
    }
    let consumed = 2 + charset.len() + 1 + encoding.len() + 1 + end + 2;
    // RFC 2231 allows a language after '*'.
    let charset = charset.split('*').next().unwrap_or(charset);
    let bytes = match encoding {
        "Q" | "q" => {
            let underscores_as_spaces = text.replace('_', " ");
            decode_quoted_printable(underscores_as_spaces.as_bytes())
        }
        "B" | "b" => decode_base64(text.as_bytes()),
        _ => return None,
    };
    Some((decode_charset(&bytes, charset), consumed))
}

/// RFC 3676: a line ending in a space continues on the next line (with
/// `delsp=yes` that space is dropped); space-stuffing is undone.
fn unflow(text: &str, delete_space: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.strip_prefix(' ').unwrap_or(line);
        if line.ends_with(' ') && line != "-- " {
            out.push_str(if delete_space {
                &line[..line.len() - 1]
            } else {
                line
            });
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// A readable rendering of HTML: tags dropped, blocks and `<br>` as line
/// breaks, numeric and the common (Spanish-language) named entities decoded,
/// `<head>`, `<script>` and `<style>` content left out.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        out.push_str(&decode_entities(&rest[..open]));
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = after[..close].trim().to_ascii_lowercase();
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect();
        rest = &after[close + 1..];
        if !tag.starts_with('/') && matches!(name.as_str(), "script" | "style" | "head") {
            let end_tag = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = match lower.find(&end_tag) {
                Some(at) => rest[at..].find('>').map_or("", |gt| &rest[at + gt + 1..]),
                None => "",
            };
            continue;
        }
        let block = matches!(
            name.as_str(),
            "p" | "div" | "tr" | "li" | "h1" | "h2" | "h3" | "h4" | "blockquote"
        );
        if name == "br" || (block && !out.is_empty() && !out.ends_with('\n')) {
            out.push('\n');
        }
    }
    out.push_str(&decode_entities(rest));
    // HTML collapses white space; keep the line breaks the tags made.
    out.split('\n')
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let decoded = after.find(';').filter(|&semi| semi <= 8).and_then(|semi| {
            let name = &after[..semi];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                "aacute" => Some('á'),
                "eacute" => Some('é'),
                "iacute" => Some('í'),
                "oacute" => Some('ó'),
                "uacute" => Some('ú'),
                "ntilde" => Some('ñ'),
                "uuml" => Some('ü'),
                "Aacute" => Some('Á'),
                "Eacute" => Some('É'),
                "Iacute" => Some('Í'),
                "Oacute" => Some('Ó'),
                "Uacute" => Some('Ú'),
                "Ntilde" => Some('Ñ'),
                "iquest" => Some('¿'),
                "iexcl" => Some('¡'),
                "euro" => Some('€'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &after[semi + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `\n` line ends, no trailing white space on lines, no blank lines at
/// either end.
fn tidy(text: &str) -> String {
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).trim_end())
        .collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crlf(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn a_plain_message_is_its_body() {
        let raw = crlf(
            "From: Ana <ana@example.com>\nSubject: Hola\nContent-Type: text/plain; charset=utf-8\n\nHola,\n¿sale a tiempo el de las 8?\n",
        );
        assert_eq!(
            read(&raw),
            ReadMail {
                text: "Hola,\n¿sale a tiempo el de las 8?".to_owned(),
                attachments: vec![]
            }
        );
    }

    #[test]
    fn a_message_without_content_type_is_ascii_text() {
        let raw = b"Subject: x\n\nplain old mail\n";
        assert_eq!(read(raw).text, "plain old mail");
    }

    #[test]
    fn multipart_alternative_prefers_the_plain_part() {
        let raw = crlf(concat!(
            "MIME-Version: 1.0\n",
            "Content-Type: multipart/alternative;\n\tboundary=\"b1=_x\"\n",
            "\n",
            "This is a multi-part message in MIME format.\n",
            "--b1=_x\n",
            "Content-Type: text/plain; charset=\"UTF-8\"\n",
            "Content-Transfer-Encoding: quoted-printable\n",
            "\n",
            "Buenos d=C3=ADas, quisiera cambiar mi asiento para el viaje a Le=C3=B3n, =\n",
            "por favor.\n",
            "\n",
            "--b1=_x\n",
            "Content-Type: text/html; charset=\"UTF-8\"\n",
            "\n",
            "<p>Buenos d&iacute;as</p>\n",
            "--b1=_x--\n",
            "epilogue\n",
        ));
        let mail = read(&raw);
        assert_eq!(
            mail.text,
            "Buenos días, quisiera cambiar mi asiento para el viaje a León, por favor."
        );
        assert!(mail.attachments.is_empty());
    }

    #[test]
    fn html_only_mail_is_reduced_to_text() {
        let raw = crlf(concat!(
            "Content-Type: multipart/alternative; boundary=zz\n\n",
            "--zz\n",
            "Content-Type: text/html; charset=utf-8\n\n",
            "<html><head><style>p{color:red}</style></head><body><p>Hola&nbsp;&amp; adi&#243;s</p><div>L&iacute;nea&#x21;</div></body></html>\n",
            "--zz--\n",
        ));
        assert_eq!(read(&raw).text, "Hola & adiós\nLínea!");
    }

    #[test]
    fn a_base64_part_inside_multipart_mixed_and_its_attachment() {
        let text = base64::engine::general_purpose::STANDARD.encode("Adjunto mi boleto. ¡Gracias!");
        let raw = crlf(&format!(
            concat!(
                "Content-Type: multipart/mixed; boundary=\"outer\"\n\n",
                "--outer\n",
                "Content-Type: multipart/alternative; boundary=\"inner\"\n\n",
                "--inner\n",
                "Content-Type: text/plain; charset=utf-8\n",
                "Content-Transfer-Encoding: base64\n\n",
                "{}\n{}\n",
                "--inner\n",
                "Content-Type: text/html; charset=utf-8\n\n",
                "<p>Adjunto</p>\n",
                "--inner--\n",
                "--outer\n",
                "Content-Type: application/pdf; name=\"boleto.pdf\"\n",
                "Content-Disposition: attachment; filename=\"boleto.pdf\"\n",
                "Content-Transfer-Encoding: base64\n\n",
                "JVBERi0xLjQK\n",
                "--outer--\n",
            ),
            &text[..20],
            &text[20..],
        ));
        let mail = read(&raw);
        assert_eq!(mail.text, "Adjunto mi boleto. ¡Gracias!");
        assert_eq!(
            mail.attachments,
            vec![Attachment {
                filename: Some("boleto.pdf".to_owned()),
                content_type: "application/pdf".to_owned(),
                size: 9,
            }]
        );
    }

    #[test]
    fn a_text_file_sent_as_an_attachment_is_not_the_body() {
        let raw = crlf(concat!(
            "Content-Type: multipart/mixed; boundary=m\n\n",
            "--m\n",
            "Content-Type: text/plain\n",
            "Content-Disposition: attachment; filename=notes.txt\n\n",
            "not the body\n",
            "--m\n",
            "Content-Type: text/plain\n\n",
            "the body\n",
            "--m--\n",
        ));
        let mail = read(&raw);
        assert_eq!(mail.text, "the body");
        assert_eq!(mail.attachments.len(), 1);
        assert_eq!(mail.attachments[0].filename.as_deref(), Some("notes.txt"));
    }

    #[test]
    fn quoted_printable_soft_line_breaks_and_escapes() {
        let encoded = b"Una l=C3=ADnea muy larga que el remitente parti=\r\n=C3=B3 en dos.   \r\nSegunda =3D l=EDnea, = suelta\r\nfin=";
        assert_eq!(
            String::from_utf8_lossy(&decode_quoted_printable(encoded)),
            "Una línea muy larga que el remitente partió en dos.\nSegunda = l\u{FFFD}nea, = suelta\nfin"
        );
        assert_eq!(decode_quoted_printable(b"a=\nb"), b"ab");
        assert_eq!(decode_quoted_printable(b"=4"), b"=4");
    }

    #[test]
    fn iso_8859_1_and_windows_1252_text() {
        let raw = b"Content-Type: text/plain; charset=ISO-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nMa=F1ana a las 7, se=F1or P=E9rez.\r\n";
        assert_eq!(read(raw).text, "Mañana a las 7, señor Pérez.");
        let eight_bit = b"Content-Type: text/plain; charset=\"iso-8859-1\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\nAdi\xf3s\r\n";
        assert_eq!(read(eight_bit).text, "Adiós");
        assert_eq!(
            decode_charset(b"\x93hola\x94 \x80", "windows-1252"),
            "“hola” €"
        );
        assert_eq!(decode_charset(b"\xa4", "ISO-8859-15"), "€");
        assert_eq!(decode_charset(b"\xc3\xb1", "unknown-8"), "ñ");
    }

    #[test]
    fn base64_is_read_leniently() {
        assert_eq!(decode_base64(b"SG9s\r\nYQ=="), b"Hola");
        assert_eq!(decode_base64(b"SG9sYQ"), b"Hola");
        assert_eq!(decode_base64(b"SG9sYQ=\n"), b"Hola");
    }

    #[test]
    fn encoded_words_in_headers() {
        assert_eq!(
            decode_words("=?UTF-8?Q?Cambio_de_asiento_=E2=80=93_Le=C3=B3n?="),
            "Cambio de asiento – León"
        );
        assert_eq!(
            decode_words("=?utf-8?B?QW5h?= =?utf-8?B?IEzDs3Bleg==?= <x>"),
            "Ana López <x>"
        );
        assert_eq!(decode_words("=?iso-8859-1?q?Jos=E9?= Ruiz"), "José Ruiz");
        assert_eq!(decode_words("plain =? not a word"), "plain =? not a word");
    }

    #[test]
    fn format_flowed_is_unwrapped() {
        let raw = b"Content-Type: text/plain; charset=utf-8; format=flowed\r\n\r\nUna frase que \r\nsigue aqu\xc3\xad.\r\nOtra.\r\n";
        assert_eq!(read(raw).text, "Una frase que sigue aquí.\nOtra.");
    }

    #[test]
    fn a_missing_closing_boundary_still_yields_the_parts() {
        let raw = b"Content-Type: multipart/mixed; boundary=q\n\n--q\nContent-Type: text/plain\n\ntruncated mail";
        assert_eq!(read(raw).text, "truncated mail");
    }

    #[test]
    fn nesting_is_bounded() {
        let mut raw = String::new();
        for i in 0..20 {
            raw.push_str(&format!(
                "Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n"
            ));
        }
        raw.push_str("Content-Type: text/plain\n\ndeep");
        // Deeper than MAX_DEPTH the multipart is an opaque attachment.
        let mail = read(raw.as_bytes());
        assert_eq!(mail.text, "");
        assert_eq!(mail.attachments.len(), 1);
    }
}
