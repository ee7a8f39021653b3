//! Reading a batch/transaction-response Bundle: only `entry[i].response.status` and
//! `entry[i].response.outcome` matter to the uploader.
//!
//! Servers send much more: Medplum returns every created resource in `entry[i].resource` (it
//! ignores `Prefer: return=minimal`), so a reply to a Bundle of 48 Observations is ≈ 100 KB, of
//! which the uploader needs a few hundred bytes. Parsing it into a `serde_json::Value` tree cost
//! more CPU than building and sending the Bundle; borrowed serde structs that skipped the rest
//! still walked every token of every resource (≈ 12 % of the uploader's CPU, issue #5,
//! docs/PERFORMANCE.md "Round 5"). So this is a small scanner instead:
//!
//! - what it reads it checks like a JSON parser: the top-level object and its keys, the `entry`
//!   array, each entry (an object or `null`), `response` (an object or `null`), `status` (a
//!   string or `null`; escapes are decoded by serde_json), and the extent of `outcome`, whose
//!   text is returned as the server sent it (it becomes a dead letter's reason);
//! - everything else (the resources, `location`, unknown keys) it only skips: strings are found
//!   by `memchr` and brackets are balanced, so a truncated or cut-off body is an error, but the
//!   grammar inside a skipped value (e.g. a stray `:` in an array) is not checked — nothing the
//!   uploader decides depends on it.
//!
//! The serde-based reader it replaced stays in the tests as the reference it must agree with
//! on every valid reply (`reply_tests.rs`).

use std::borrow::Cow;

use super::retry::entry_status;

/// Why a reply body is not a readable response Bundle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("response Bundle unreadable at byte {at}: {what}")]
pub struct ReplyError {
    pub at: usize,
    pub what: &'static str,
}

/// The parts of a response Bundle the uploader reads.
#[derive(Debug, Default)]
pub struct ReplyBundle<'a> {
    /// `null` entries are kept (a server may leave holes), so indexes stay aligned with the
    /// request Bundle's entries.
    entry: Vec<Option<ReplyEntry<'a>>>,
}

#[derive(Debug, Default)]
struct ReplyEntry<'a> {
    response: Option<EntryResponse<'a>>,
}

#[derive(Debug, Default)]
struct EntryResponse<'a> {
    /// e.g. `"201 Created"`. `Cow`: a JSON string with escapes cannot be borrowed.
    status: Option<Cow<'a, str>>,
    /// The OperationOutcome, as the server's text.
    outcome: Option<&'a str>,
}

/// What the server answered for one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryReply<'a> {
    /// The numeric status, `None` when missing or not of the form `"NNN text"`.
    pub status: Option<u16>,
    pub outcome: Option<&'a str>,
}

impl<'a> ReplyBundle<'a> {
    /// Reads a response Bundle; `Err` when the body is not JSON of that shape (module doc).
    pub fn parse(body: &'a [u8]) -> Result<Self, ReplyError> {
        let mut s = Scanner { text: body, at: 0 };
        let mut bundle = ReplyBundle::default();
        let mut seen_entry = false;
        s.object(|s, key| {
            if key != "entry" {
                return s.skip_value();
            }
            if std::mem::replace(&mut seen_entry, true) {
                return Err(s.error("duplicate key `entry`"));
            }
            s.array(|s| {
                let entry = if s.null()? { None } else { Some(s.entry()?) };
                bundle.entry.push(entry);
                Ok(())
            })
        })?;
        s.whitespace();
        if s.at != body.len() {
            return Err(s.error("text after the Bundle"));
        }
        Ok(bundle)
    }

    /// The answer to request entry `index` (`None`: no such entry or no `response`).
    pub fn entry(&self, index: usize) -> Option<EntryReply<'a>> {
        let response = self.entry.get(index)?.as_ref()?.response.as_ref()?;
        Some(EntryReply {
            status: response.status.as_deref().and_then(entry_status),
            outcome: response.outcome,
        })
    }
}

/// A cursor over the reply text.
struct Scanner<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Scanner<'a> {
    fn error(&self, what: &'static str) -> ReplyError {
        ReplyError { at: self.at, what }
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    /// The next non-whitespace byte, not consumed.
    fn peek(&mut self) -> Result<u8, ReplyError> {
        self.whitespace();
        self.text
            .get(self.at)
            .copied()
            .ok_or_else(|| self.error("unexpected end"))
    }

    fn eat(&mut self, byte: u8, what: &'static str) -> Result<(), ReplyError> {
        if self.peek()? != byte {
            return Err(self.error(what));
        }
        self.at += 1;
        Ok(())
    }

    /// Consumes `null` if it comes next.
    fn null(&mut self) -> Result<bool, ReplyError> {
        if self.peek()? == b'n' {
            if self.text[self.at..].starts_with(b"null") {
                self.at += 4;
                return Ok(true);
            }
            return Err(self.error("invalid literal"));
        }
        Ok(false)
    }

    /// A string starting at the cursor (the opening quote): its raw text between the quotes,
    /// and whether it holds escapes.
    fn string(&mut self) -> Result<(&'a [u8], bool), ReplyError> {
        self.eat(b'"', "expected a string")?;
        let start = self.at;
        let mut escaped = false;
        loop {
            let Some(found) = find_quote_or_backslash(self.text, self.at) else {
                self.at = self.text.len();
                return Err(self.error("unterminated string"));
            };
            self.at = found;
            match self.text[self.at] {
                b'"' => {
                    self.at += 1;
                    return Ok((&self.text[start..self.at - 1], escaped));
                }
                // The byte after a backslash cannot end the string (`\u` is followed by hex).
                _ => {
                    escaped = true;
                    self.at += 2;
                }
            }
        }
    }

    /// A string's value: borrowed, or decoded by serde_json when it holds escapes.
    fn string_value(&mut self) -> Result<Cow<'a, str>, ReplyError> {
        let start = self.at;
        let (raw, escaped) = self.string()?;
        if escaped {
            let quoted = &self.text[start..self.at];
            return serde_json::from_slice::<String>(quoted)
                .map(Cow::Owned)
                .map_err(|_| ReplyError {
                    at: start,
                    what: "invalid string escape",
                });
        }
        std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| ReplyError {
                at: start,
                what: "string is not UTF-8",
            })
    }

    /// An object: calls `member` with the cursor on each value, after its key.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &str) -> Result<(), ReplyError>,
    ) -> Result<(), ReplyError> {
        self.eat(b'{', "expected an object")?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string_value()?;
            self.eat(b':', "expected `:`")?;
            member(self, &key)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}`")),
            }
        }
    }

    /// An array: calls `element` with the cursor on each element.
    fn array(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), ReplyError>,
    ) -> Result<(), ReplyError> {
        self.eat(b'[', "expected an array")?;
        if self.peek()? == b']' {
            self.at += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]`")),
            }
        }
    }

    /// One element of `entry`: an object whose `response` is read.
    fn entry(&mut self) -> Result<ReplyEntry<'a>, ReplyError> {
        let mut entry = ReplyEntry::default();
        let mut seen = false;
        self.object(|s, key| {
            if key != "response" {
                return s.skip_value();
            }
            if std::mem::replace(&mut seen, true) {
                return Err(s.error("duplicate key `response`"));
            }
            entry.response = if s.null()? { None } else { Some(s.response()?) };
            Ok(())
        })?;
        Ok(entry)
    }

    fn response(&mut self) -> Result<EntryResponse<'a>, ReplyError> {
        let mut response = EntryResponse::default();
        let (mut seen_status, mut seen_outcome) = (false, false);
        self.object(|s, key| match key {
            "status" => {
                if std::mem::replace(&mut seen_status, true) {
                    return Err(s.error("duplicate key `status`"));
                }
                response.status = if s.null()? {
                    None
                } else {
                    Some(s.string_value()?)
                };
                Ok(())
            }
            "outcome" => {
                if std::mem::replace(&mut seen_outcome, true) {
                    return Err(s.error("duplicate key `outcome`"));
                }
                if s.null()? {
                    response.outcome = None;
                    return Ok(());
                }
                let start = s.at;
                s.skip_value()?;
                // Skipped bytes are ASCII structure or whole strings; the check covers both.
                response.outcome = Some(
                    std::str::from_utf8(&s.text[start..s.at])
                        .map_err(|_| s.error("outcome is not UTF-8"))?,
                );
                Ok(())
            }
            _ => s.skip_value(),
        })?;
        Ok(response)
    }

    /// Skips one value: a string, a balanced object or array, or a literal/number.
    fn skip_value(&mut self) -> Result<(), ReplyError> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.skip_nested(),
            b'-' | b'0'..=b'9' | b't' | b'f' | b'n' => {
                let rest = &self.text[self.at..];
                let len = rest
                    .iter()
                    .position(
                        |b| !matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'+' | b'-' | b'E'),
                    )
                    .unwrap_or(rest.len());
                self.at += len;
                Ok(())
            }
            _ => Err(self.error("expected a value")),
        }
    }

    /// Skips an object or array, balancing brackets and stepping over strings.
    fn skip_nested(&mut self) -> Result<(), ReplyError> {
        let mut depth = 0usize;
        while let Some(&byte) = self.text.get(self.at) {
            match byte {
                b'"' => {
                    self.string()?;
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
        Err(self.error("unexpected end"))
    }
}

/// The index of the first `"` or `\` in `text` from `at` on.
///
/// Eight bytes at a time first: most strings in a reply are a few words long (keys, codes,
/// ids), and for those the `memchr2` call costs more than the search (its calls were ≈ 3 % of
/// a drain's CPU samples; one real reply read 17 % faster without them: docs/PERFORMANCE.md,
/// "Round 7"). A string still going after 32 bytes (a narrative, a long diagnostic) is
/// searched by `memchr2`.
fn find_quote_or_backslash(text: &[u8], at: usize) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    /// Bit 7 of each byte of `x` that is zero, and no other bit (exact: no carry between
    /// bytes, since `(b & 0x7f) + 0x7f` ≤ 0xfe).
    fn zero_bytes(x: u64) -> u64 {
        !(((x & LOW7) + LOW7) | x) & !LOW7
    }
    let mut word_at = at;
    for _ in 0..4 {
        let Some(word) = text.get(word_at..word_at + 8) else {
            break;
        };
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let w = u64::from_le_bytes(bytes);
        let hits =
            zero_bytes(w ^ (ONES * u64::from(b'"'))) | zero_bytes(w ^ (ONES * u64::from(b'\\')));
        if hits != 0 {
            // Little-endian: the first byte of the slice is the lowest of the word.
            return Some(word_at + (hits.trailing_zeros() / 8) as usize);
        }
        word_at += 8;
    }
    let rest = text.get(word_at..)?;
    memchr::memchr2(b'"', b'\\', rest).map(|i| word_at + i)
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
