//! HTTP/1.1 on the wire, as pure functions over bytes: finding and parsing a request
//! head in a fixed buffer, decoding a chunked body into a fixed buffer, and writing a
//! response. Nothing here reads a socket, keeps time, or sizes anything by what a
//! client declares: every bound comes from [`Limits`] or from the caller's buffers.
//! The connection loop in `front` owns the buffers, the deadlines and the socket.
//!
//! Strict by design (the API has one kind of client, and strictness closes request
//! smuggling): head bytes are printable ASCII, `\t`, `\r` before `\n` and nothing else;
//! no obsolete line folding; no whitespace before a header's colon; only origin-form
//! targets; `Transfer-Encoding` only as exactly `chunked`, never beside
//! `Content-Length`. A bare `\n` is accepted as a line end (RFC 9112 2.2).

use std::fmt::Write as _;

/// Bounds on a request head, configured once per server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The whole head, request line and blank line included; beyond it: 431.
    pub max_head_bytes: usize,
    /// Header fields in one head; beyond it: 431.
    pub max_headers: usize,
}

/// Request targets longer than this are refused with 414.
pub const MAX_TARGET_BYTES: usize = 2048;
/// Methods longer than this are refused with 501 (none of ours is longer than 7).
const MAX_METHOD_BYTES: usize = 16;

/// Byte offsets of a part of the head, into the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    start: usize,
    end: usize,
}

impl Span {
    pub fn of(self, buf: &[u8]) -> &[u8] {
        &buf[self.start..self.end]
    }

    /// As text. Head bytes were checked to be ASCII, so this cannot fail on a parsed head.
    pub fn str(self, buf: &[u8]) -> &str {
        std::str::from_utf8(self.of(buf)).unwrap_or("")
    }
}

/// One header field: name and value (trimmed of surrounding whitespace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HeaderSpan {
    pub name: Span,
    pub value: Span,
}

/// How the body that follows the head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    /// `Content-Length`, saturated at `u64::MAX` (a declared size is never trusted, only compared).
    Length(u64),
    Chunked,
}

/// A parsed request head. Spans point into the buffer it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Bytes the head occupies, blank line included: the body starts here.
    pub len: usize,
    pub method: Span,
    pub target: Span,
    /// `HTTP/1.0` (else `HTTP/1.1`).
    pub http10: bool,
    /// Header fields, in the caller's slice.
    pub headers: usize,
    pub framing: Framing,
    /// Whether the client allows the connection to stay open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Why a head is refused, and with which status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// 400: a malformed head.
    Bad(&'static str),
    /// 414: the target is longer than [`MAX_TARGET_BYTES`].
    TargetTooLong,
    /// 431: more header bytes or fields than [`Limits`] allow.
    TooLarge,
    /// 501: a method or transfer coding this server does not implement.
    NotImplemented(&'static str),
    /// 417: an expectation other than `100-continue`.
    Expectation,
    /// 505: a version other than HTTP/1.0 and HTTP/1.1 (HTTP/2's preface included).
    Version,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::Bad(_) => 400,
            HeadError::TargetTooLong => 414,
            HeadError::TooLarge => 431,
            HeadError::NotImplemented(_) => 501,
            HeadError::Expectation => 417,
            HeadError::Version => 505,
        }
    }

    /// A sentence for the client's error body.
    pub fn message(self) -> &'static str {
        match self {
            HeadError::Bad(why) => why,
            HeadError::TargetTooLong => "request target too long",
            HeadError::TooLarge => "request header fields too large",
            HeadError::NotImplemented(what) => what,
            HeadError::Expectation => "only Expect: 100-continue is supported",
            HeadError::Version => "HTTP version not supported: use HTTP/1.1",
        }
    }
}

/// Progress of finding a head's end in a buffer that grows a read at a time. Scanning
/// resumes where it stopped, so a head that drips in a byte at a time costs linear work.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadScan {
    scanned: usize,
    request_line_checked: bool,
}

impl HeadScan {
    /// Looks at `buf` (everything received of this head so far): `Ok(Some(len))` once the
    /// head is complete, `Ok(None)` while more is needed, and an error as soon as a byte
    /// or the request line already shows the head is bad, without waiting for the rest.
    pub fn advance(&mut self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, HeadError> {
        let mut i = self.scanned;
        while i < buf.len() {
            let byte = buf[i];
            if !is_head_byte(byte) {
                return Err(HeadError::Bad(
                    "request head has bytes that are not ASCII text",
                ));
            }
            if byte == b'\n' {
                if !self.request_line_checked {
                    self.request_line_checked = true;
                    check_request_line(trim_cr(&buf[..i])?)?;
                }
                // A line end right after a line end: the blank line that ends the head.
                let rest = &buf[i + 1..];
                if rest.first() == Some(&b'\n') {
                    return self.complete(i + 2, limits);
                }
                if rest.len() >= 2 && rest[0] == b'\r' && rest[1] == b'\n' {
                    return self.complete(i + 3, limits);
                }
                if rest.is_empty() || (rest.len() == 1 && rest[0] == b'\r') {
                    // The blank line may be arriving: rescan from this line end.
                    self.scanned = i;
                    return self.incomplete(buf, limits);
                }
            }
            i += 1;
        }
        self.scanned = i;
        self.incomplete(buf, limits)
    }

    fn complete(&mut self, len: usize, limits: &Limits) -> Result<Option<usize>, HeadError> {
        if len > limits.max_head_bytes {
            return Err(HeadError::TooLarge);
        }
        Ok(Some(len))
    }

    fn incomplete(&self, buf: &[u8], limits: &Limits) -> Result<Option<usize>, HeadError> {
        if buf.len() >= limits.max_head_bytes {
            if !self.request_line_checked && buf.len() > MAX_TARGET_BYTES {
                return Err(HeadError::TargetTooLong);
            }
            return Err(HeadError::TooLarge);
        }
        Ok(None)
    }
}

/// Printable ASCII, tab, CR and LF.
fn is_head_byte(byte: u8) -> bool {
    matches!(byte, b' '..=b'~' | b'\t' | b'\r' | b'\n')
}

/// RFC 9110 5.6.2 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

fn trim_cr(line: &[u8]) -> Result<&[u8], HeadError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(HeadError::Bad("a bare CR in the request head"));
    }
    Ok(line)
}

/// `METHOD SP origin-form SP HTTP/1.x`; returns the three parts.
fn check_request_line(line: &[u8]) -> Result<(&[u8], &[u8], bool), HeadError> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Bad(
            "malformed request line: expected METHOD /path HTTP/1.1",
        ));
    };
    let http10 = match version {
        b"HTTP/1.1" => false,
        b"HTTP/1.0" => true,
        [b'H', b'T', b'T', b'P', b'/', major, rest @ ..]
            if major.is_ascii_digit()
                && (rest.is_empty() || matches!(rest, [b'.', minor] if minor.is_ascii_digit())) =>
        {
            return Err(HeadError::Version)
        }
        _ => return Err(HeadError::Bad("malformed HTTP version in the request line")),
    };
    if method.is_empty() || !method.iter().all(|&b| is_token_byte(b)) {
        return Err(HeadError::Bad("malformed method in the request line"));
    }
    if method.len() > MAX_METHOD_BYTES {
        return Err(HeadError::NotImplemented("method not implemented"));
    }
    if target.len() > MAX_TARGET_BYTES {
        return Err(HeadError::TargetTooLong);
    }
    if target.first() != Some(&b'/') || target.iter().any(|&b| !b.is_ascii_graphic()) {
        return Err(HeadError::Bad(
            "the request target must be a path starting with /",
        ));
    }
    Ok((method, target, http10))
}

/// Parses a complete head (`buf[..len]`, `len` from [`HeadScan::advance`]), writing its
/// header fields into `headers` (whose length is the field limit).
pub fn parse_head(buf: &[u8], headers: &mut [HeaderSpan]) -> Result<Head, HeadError> {
    let mut lines = Lines { buf, pos: 0 };
    let (line_start, line) = lines.next_line()?.ok_or(HeadError::Bad("empty request"))?;
    let (method, target, http10) = check_request_line(line)?;
    let method = Span {
        start: line_start,
        end: line_start + method.len(),
    };
    let target = Span {
        start: method.end + 1,
        end: method.end + 1 + target.len(),
    };
    let mut head = Head {
        len: 0,
        method,
        target,
        http10,
        headers: 0,
        framing: Framing::None,
        keep_alive: !http10,
        expect_continue: false,
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    loop {
        let (start, line) = lines
            .next_line()?
            .ok_or(HeadError::Bad("incomplete head"))?;
        if line.is_empty() {
            break;
        }
        if head.headers == headers.len() {
            return Err(HeadError::TooLarge);
        }
        let field = parse_field(start, line)?;
        headers[head.headers] = field;
        head.headers += 1;
        let name = field.name.of(buf);
        let value = field.value.of(buf);
        if name.eq_ignore_ascii_case(b"content-length") {
            let length = parse_content_length(value)?;
            if content_length.is_some_and(|seen| seen != length) {
                return Err(HeadError::Bad("conflicting Content-Length fields"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                return Err(HeadError::NotImplemented(
                    "only Transfer-Encoding: chunked is implemented",
                ));
            }
            chunked = true;
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in value.split(|&b| b == b',').map(trim_ows) {
                if option.eq_ignore_ascii_case(b"close") {
                    head.keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") && http10 {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"expect") {
            if !value.eq_ignore_ascii_case(b"100-continue") {
                return Err(HeadError::Expectation);
            }
            head.expect_continue = true;
        }
    }
    head.len = lines.pos;
    head.framing = match (content_length, chunked) {
        (Some(_), true) => {
            return Err(HeadError::Bad(
                "Content-Length and Transfer-Encoding together are refused",
            ))
        }
        (_, true) if http10 => {
            return Err(HeadError::Bad(
                "Transfer-Encoding is not allowed in HTTP/1.0",
            ))
        }
        (_, true) => Framing::Chunked,
        (Some(0) | None, false) => Framing::None,
        (Some(length), false) => Framing::Length(length),
    };
    Ok(head)
}

struct Lines<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its line end, and where it starts.
    fn next_line(&mut self) -> Result<Option<(usize, &'a [u8])>, HeadError> {
        let rest = &self.buf[self.pos..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            return Ok(None);
        };
        let start = self.pos;
        self.pos += lf + 1;
        Ok(Some((start, trim_cr(&rest[..lf])?)))
    }
}

fn parse_field(start: usize, line: &[u8]) -> Result<HeaderSpan, HeadError> {
    if matches!(line.first(), Some(b' ' | b'\t')) {
        return Err(HeadError::Bad("obsolete line folding in a header field"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(HeadError::Bad("a header line without a colon"))?;
    let name = &line[..colon];
    if name.is_empty() || !name.iter().all(|&b| is_token_byte(b)) {
        return Err(HeadError::Bad("malformed header field name"));
    }
    let raw_value = &line[colon + 1..];
    let leading = raw_value
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    let value = trim_ows(raw_value);
    let value_start = start + colon + 1 + leading;
    Ok(HeaderSpan {
        name: Span {
            start,
            end: start + colon,
        },
        value: Span {
            start: value_start,
            end: value_start + value.len(),
        },
    })
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// Digits only; a value beyond `u64` saturates (it is only ever compared with a limit).
fn parse_content_length(value: &[u8]) -> Result<u64, HeadError> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(HeadError::Bad("Content-Length must be a whole number"));
    }
    Ok(value.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// The value of the first header field called `name` (case-insensitive).
pub fn header<'b>(buf: &'b [u8], headers: &[HeaderSpan], name: &str) -> Option<&'b str> {
    headers
        .iter()
        .find(|h| h.name.of(buf).eq_ignore_ascii_case(name.as_bytes()))
        .map(|h| h.value.str(buf))
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkError {
    /// 400: not valid chunked coding.
    Bad(&'static str),
    /// The decoded body would exceed the output limit.
    TooLarge,
}

/// A chunk-size line (extensions included) or a trailer line longer than this is refused.
const MAX_CHUNK_LINE: usize = 256;
/// The trailer section as a whole.
const MAX_TRAILER_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In a chunk-size line: the size so far, whether in extensions, the line's length.
    Size {
        size: u64,
        digits: usize,
        in_extension: bool,
        line: usize,
    },
    /// In chunk data, with this many bytes left.
    Data(u64),
    /// After chunk data: the CRLF that ends it.
    DataEnd {
        saw_cr: bool,
    },
    /// In the trailer section: this line's length so far, the section's.
    Trailer {
        line: usize,
        total: usize,
    },
    Done,
}

/// Decodes `Transfer-Encoding: chunked` into a caller's fixed buffer, a read at a time.
/// Refuses as soon as a declared chunk would overflow the buffer, before reading it.
#[derive(Debug, Clone, Copy)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size {
                size: 0,
                digits: 0,
                in_extension: false,
                line: 0,
            },
        }
    }
}

impl ChunkedDecoder {
    /// Feeds `input`, appending data to `out[*written..]`. Returns how many input bytes
    /// were consumed and whether the body (trailers included) is complete; a complete
    /// body leaves any further input (a pipelined request) unconsumed.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut [u8],
        written: &mut usize,
    ) -> Result<(usize, bool), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let byte = input[i];
            match &mut self.state {
                ChunkState::Done => break,
                ChunkState::Size {
                    size,
                    digits,
                    in_extension,
                    line,
                } => {
                    *line += 1;
                    if *line > MAX_CHUNK_LINE {
                        return Err(ChunkError::Bad("chunk-size line too long"));
                    }
                    match byte {
                        b'\n' => {
                            if *digits == 0 {
                                return Err(ChunkError::Bad("chunk size missing"));
                            }
                            let size = *size;
                            if size == 0 {
                                self.state = ChunkState::Trailer { line: 0, total: 0 };
                            } else if size > (out.len() - *written) as u64 {
                                return Err(ChunkError::TooLarge);
                            } else {
                                self.state = ChunkState::Data(size);
                            }
                        }
                        b'\r' => {}
                        _ if *in_extension => {
                            if !is_head_byte(byte) {
                                return Err(ChunkError::Bad("bad byte in a chunk extension"));
                            }
                        }
                        b';' | b' ' | b'\t' if *digits > 0 => *in_extension = true,
                        _ => {
                            let digit = (byte as char)
                                .to_digit(16)
                                .ok_or(ChunkError::Bad("chunk size is not hexadecimal"))?;
                            *digits += 1;
                            // 16 hex digits fill a u64; more can only mean "too large".
                            if *digits > 16 {
                                return Err(ChunkError::TooLarge);
                            }
                            *size = (*size << 4) | u64::from(digit);
                        }
                    }
                    i += 1;
                }
                ChunkState::Data(left) => {
                    let take = (input.len() - i).min(usize::try_from(*left).unwrap_or(usize::MAX));
                    out[*written..*written + take].copy_from_slice(&input[i..i + take]);
                    *written += take;
                    *left -= take as u64;
                    i += take;
                    if *left == 0 {
                        self.state = ChunkState::DataEnd { saw_cr: false };
                    }
                }
                ChunkState::DataEnd { saw_cr } => {
                    match byte {
                        b'\r' if !*saw_cr => *saw_cr = true,
                        b'\n' => {
                            self.state = ChunkState::Size {
                                size: 0,
                                digits: 0,
                                in_extension: false,
                                line: 0,
                            }
                        }
                        _ => return Err(ChunkError::Bad("chunk data longer than its size")),
                    }
                    i += 1;
                }
                ChunkState::Trailer { line, total } => {
                    *total += 1;
                    if *total > MAX_TRAILER_BYTES {
                        return Err(ChunkError::Bad("chunked trailer section too large"));
                    }
                    match byte {
                        b'\n' if *line == 0 => self.state = ChunkState::Done,
                        b'\n' => *line = 0,
                        b'\r' if *line == 0 => {}
                        _ if is_head_byte(byte) => *line += 1,
                        _ => return Err(ChunkError::Bad("bad byte in a chunked trailer")),
                    }
                    i += 1;
                }
            }
        }
        Ok((i, self.state == ChunkState::Done))
    }
}

/// A response, independent of the socket it goes to.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub content_type: Option<&'static str>,
    /// `Allow`, for 405.
    pub allow: Option<&'static str>,
    /// `Retry-After` in seconds, for 503.
    pub retry_after: Option<u32>,
}

pub const JSON: &str = "application/json";

impl Reply {
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            body: Vec::new(),
            content_type: None,
            allow: None,
            retry_after: None,
        }
    }

    pub fn json(status: u16, body: String) -> Reply {
        Reply {
            status,
            body: body.into_bytes(),
            content_type: Some(JSON),
            allow: None,
            retry_after: None,
        }
    }

    /// `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Reply {
        let mut body = String::with_capacity(message.len() + 16);
        body.push_str("{\"error\":");
        // Serialising a &str cannot fail.
        body.push_str(&serde_json::to_string(message).unwrap_or_default());
        body.push('}');
        Reply::json(status, body)
    }

    pub fn with_allow(mut self, allow: &'static str) -> Reply {
        self.allow = Some(allow);
        self
    }

    pub fn with_retry_after(mut self, seconds: u32) -> Reply {
        self.retry_after = Some(seconds);
        self
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// Appends the response to `out`: status line, `Date`, the reply's headers, framing,
/// then the body unless `head_only` (a response to HEAD). One buffer, so one write.
pub fn write_response(out: &mut Vec<u8>, reply: &Reply, date: &str, close: bool, head_only: bool) {
    // Writing into a Vec cannot fail; the adapter only exists for `write!`.
    let mut text = VecWriter(out);
    let _ = write!(
        text,
        "HTTP/1.1 {} {}\r\nDate: {date}\r\n",
        reply.status,
        reason(reply.status)
    );
    if let Some(content_type) = reply.content_type {
        let _ = write!(text, "Content-Type: {content_type}\r\n");
    }
    if let Some(allow) = reply.allow {
        let _ = write!(text, "Allow: {allow}\r\n");
    }
    if let Some(seconds) = reply.retry_after {
        let _ = write!(text, "Retry-After: {seconds}\r\n");
    }
    // RFC 9110 8.6: no Content-Length on 1xx and 204.
    if !(reply.status < 200 || reply.status == 204) {
        let _ = write!(text, "Content-Length: {}\r\n", reply.body.len());
    }
    if close {
        text.0.extend_from_slice(b"Connection: close\r\n");
    }
    text.0.extend_from_slice(b"\r\n");
    if !head_only {
        text.0.extend_from_slice(&reply.body);
    }
}

struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for a Unix time.
pub fn http_date(unix_seconds: i64) -> String {
    jiff::Timestamp::from_second(unix_seconds)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S GMT").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_head_bytes: 8192,
        max_headers: 64,
    };

    fn parse(raw: &[u8]) -> Result<(Head, Vec<HeaderSpan>), HeadError> {
        let mut scan = HeadScan::default();
        let len = scan.advance(raw, &LIMITS)?.expect("a complete head");
        let mut headers = vec![HeaderSpan::default(); LIMITS.max_headers];
        let head = parse_head(&raw[..len], &mut headers)?;
        assert_eq!(head.len, len);
        headers.truncate(head.headers);
        Ok((head, headers))
    }

    #[test]
    fn a_simple_get_parses() {
        let raw = b"GET /hello/Bob HTTP/1.1\r\nHost: x\r\nAccept:  */* \r\n\r\nNEXT";
        let (head, headers) = parse(raw).unwrap();
        assert_eq!(head.method.str(raw), "GET");
        assert_eq!(head.target.str(raw), "/hello/Bob");
        assert_eq!(head.len, raw.len() - 4);
        assert!(head.keep_alive && !head.http10);
        assert_eq!(head.framing, Framing::None);
        assert_eq!(header(raw, &headers, "accept"), Some("*/*"));
        assert_eq!(header(raw, &headers, "HOST"), Some("x"));
        assert_eq!(header(raw, &headers, "missing"), None);
    }

    #[test]
    fn bare_line_feeds_end_lines_too() {
        let raw = b"PUT /a HTTP/1.0\nContent-Length: 3\nConnection: keep-alive\n\nabc";
        let (head, _) = parse(raw).unwrap();
        assert_eq!(head.framing, Framing::Length(3));
        assert!(head.http10 && head.keep_alive);
        assert_eq!(&raw[head.len..], b"abc");
    }

    #[test]
    fn framing_and_connection_options() {
        let (head, _) = parse(b"PUT /a HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        let (head, _) = parse(b"GET /a HTTP/1.1\r\nConnection: foo, close\r\n\r\n").unwrap();
        assert!(!head.keep_alive);
        let (head, _) = parse(b"GET /a HTTP/1.0\r\n\r\n").unwrap();
        assert!(!head.keep_alive);
        let (head, _) =
            parse(b"GET /a HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::Length(u64::MAX));
        let (head, _) = parse(b"GET /a HTTP/1.1\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!(head.framing, Framing::None);
        let (head, _) = parse(b"PUT /a HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n").unwrap();
        assert!(head.expect_continue);
    }

    #[test]
    fn each_refusal_has_its_status() {
        let cases: [(&[u8], u16); 16] = [
            (b"GET /a HTTP/2.0\r\n\r\n", 505),
            (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
            (b"GET /a HTTP/3\r\n\r\n", 505),
            (b"GET /a HTTP/1.1x\r\n\r\n", 400),
            (b"GET  /a HTTP/1.1\r\n\r\n", 400),
            (b"GET http://x/a HTTP/1.1\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nX : y\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nX: y\r\n folded\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nX y\r\n\r\n", 400),
            (b"GET /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
            (
                b"GET /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                400,
            ),
            (
                b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (
                b"PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                501,
            ),
            (
                b"PUT /a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
                400,
            ),
            (b"PUT /a HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
            (b"GET /a\rb HTTP/1.1\r\n\r\n", 400),
        ];
        for (raw, status) in cases {
            let got = parse(raw).map(|_| 200).unwrap_or_else(|e| e.status());
            assert_eq!(got, status, "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn bad_bytes_and_bad_request_lines_are_refused_before_the_head_ends() {
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.advance("GET /héllo".as_bytes(), &LIMITS)
                .unwrap_err()
                .status(),
            400
        );
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.advance(b"GET /a HTTP/2.0\r\nHost", &LIMITS)
                .unwrap_err(),
            HeadError::Version
        );
        let mut scan = HeadScan::default();
        assert_eq!(
            scan.advance(b"GET /a\x00", &LIMITS).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn a_head_that_arrives_a_byte_at_a_time_is_found_once() {
        let raw = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut scan = HeadScan::default();
        for end in 1..raw.len() {
            assert_eq!(scan.advance(&raw[..end], &LIMITS), Ok(None), "at {end}");
        }
        assert_eq!(scan.advance(raw, &LIMITS), Ok(Some(raw.len())));
    }

    #[test]
    fn heads_over_the_limits_are_431_and_long_targets_414() {
        let limits = Limits {
            max_head_bytes: 64,
            max_headers: 2,
        };
        let mut scan = HeadScan::default();
        let endless = [b"GET /a HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 60]].concat();
        assert_eq!(scan.advance(&endless, &limits), Err(HeadError::TooLarge));

        let raw = b"GET /a HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
        let len = HeadScan::default().advance(raw, &limits).unwrap().unwrap();
        let mut headers = [HeaderSpan::default(); 2];
        assert_eq!(
            parse_head(&raw[..len], &mut headers),
            Err(HeadError::TooLarge)
        );

        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_TARGET_BYTES));
        assert_eq!(
            parse(long.as_bytes()).unwrap_err(),
            HeadError::TargetTooLong
        );
    }

    fn decode(input: &[u8], capacity: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut out = vec![0; capacity];
        let mut written = 0;
        let mut decoder = ChunkedDecoder::default();
        // A byte at a time, to exercise every state across read boundaries.
        for (i, byte) in input.iter().enumerate() {
            let (used, done) = decoder.feed(std::slice::from_ref(byte), &mut out, &mut written)?;
            if done {
                out.truncate(written);
                return Ok((out, i + used));
            }
        }
        Err(ChunkError::Bad("incomplete"))
    }

    #[test]
    fn chunked_bodies_decode_into_a_fixed_buffer() {
        let (body, used) = decode(
            b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT",
            8,
        )
        .unwrap();
        assert_eq!(body, b"abcde");
        assert_eq!(
            used, 38,
            "stops right after the blank line that ends the trailers"
        );
        let (body, _) = decode(b"0\n\n", 8).unwrap();
        assert!(body.is_empty());
    }

    #[test]
    fn chunked_bodies_over_the_buffer_are_refused_at_the_size_line() {
        assert_eq!(decode(b"9\r\n", 8), Err(ChunkError::TooLarge));
        assert_eq!(decode(b"5\r\nabcde\r\n5\r\n", 8), Err(ChunkError::TooLarge));
        assert_eq!(
            decode(b"fffffffffffffffff\r\n", 8),
            Err(ChunkError::TooLarge)
        );
        assert!(matches!(decode(b"x\r\n", 8), Err(ChunkError::Bad(_))));
        assert!(matches!(
            decode(b"2\r\nabc\r\n", 8),
            Err(ChunkError::Bad(_))
        ));
        let long_extension = [b"1;".as_slice(), &[b'e'; 300]].concat();
        assert!(matches!(
            decode(&long_extension, 8),
            Err(ChunkError::Bad(_))
        ));
    }

    #[test]
    fn responses_are_framed_and_204_has_no_length() {
        let mut out = Vec::new();
        let reply = Reply::error(503, "down").with_retry_after(1);
        write_response(&mut out, &reply, "D", true, false);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 503 Service Unavailable\r\nDate: D\r\n"),
            "{text}"
        );
        assert!(text.contains("Retry-After: 1\r\nContent-Length: 16\r\nConnection: close\r\n\r\n{\"error\":\"down\"}"), "{text}");

        let mut out = Vec::new();
        write_response(&mut out, &Reply::empty(204), "D", false, false);
        assert_eq!(out, b"HTTP/1.1 204 No Content\r\nDate: D\r\n\r\n");

        let mut out = Vec::new();
        write_response(&mut out, &Reply::json(200, "{}".into()), "D", false, true);
        assert!(out.ends_with(b"Content-Length: 2\r\n\r\n"));
    }

    #[test]
    fn dates_are_imf_fixdate() {
        assert_eq!(http_date(784111777), "Sun, 06 Nov 1994 08:49:37 GMT");
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Scans `raw` as the connection loop does, a read at a time ending at each of
        /// `cuts`, and returns the first answer that is not "need more".
        fn scan_in_pieces(raw: &[u8], cuts: &[usize]) -> Result<Option<usize>, HeadError> {
            let mut scan = HeadScan::default();
            let mut ends: Vec<usize> = cuts.iter().map(|c| c % (raw.len() + 1)).collect();
            ends.push(raw.len());
            ends.sort_unstable();
            for end in ends {
                match scan.advance(&raw[..end], &LIMITS) {
                    Ok(None) => {}
                    answer => return answer,
                }
            }
            Ok(None)
        }

        fn token() -> impl Strategy<Value = String> {
            "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}"
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn any_bytes_never_panic_and_parts_stay_inside_the_head(
                raw in proptest::collection::vec(any::<u8>(), 0..4096),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let whole = HeadScan::default().advance(&raw, &LIMITS);
                prop_assert_eq!(scan_in_pieces(&raw, &cuts), whole);
                if let Ok(Some(len)) = whole {
                    prop_assert!(len <= raw.len() && len <= LIMITS.max_head_bytes);
                    let mut headers = vec![HeaderSpan::default(); LIMITS.max_headers];
                    if let Ok(head) = parse_head(&raw[..len], &mut headers) {
                        prop_assert_eq!(head.len, len);
                        prop_assert!(head.headers <= LIMITS.max_headers);
                        for span in [head.method, head.target]
                            .into_iter()
                            .chain(headers[..head.headers].iter().flat_map(|h| [h.name, h.value]))
                        {
                            prop_assert!(span.start <= span.end && span.end <= len);
                        }
                    }
                }
            }

            #[test]
            fn mutated_heads_never_panic_and_parts_stay_inside_the_head(
                edits in proptest::collection::vec(
                    (any::<usize>(), prop::sample::select(b"\r\n :\t\x00\x80a0;,".to_vec())),
                    1..6,
                ),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut raw = b"PUT /hello/Bob HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\
                    Transfer-Encoding: chunked\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n"
                    .to_vec();
                for (at, byte) in edits {
                    let at = at % raw.len();
                    raw[at] = byte;
                }
                let whole = HeadScan::default().advance(&raw, &LIMITS);
                prop_assert_eq!(scan_in_pieces(&raw, &cuts), whole);
                if let Ok(Some(len)) = whole {
                    let mut headers = vec![HeaderSpan::default(); LIMITS.max_headers];
                    if let Ok(head) = parse_head(&raw[..len], &mut headers) {
                        prop_assert_eq!(head.len, len);
                        for span in [head.method, head.target]
                            .into_iter()
                            .chain(headers[..head.headers].iter().flat_map(|h| [h.name, h.value]))
                        {
                            prop_assert!(span.start <= span.end && span.end <= len);
                            prop_assert!(span.of(&raw).iter().all(|&b| is_head_byte(b) && b != b'\n'));
                        }
                    }
                }
            }

            #[test]
            fn well_formed_heads_parse_to_what_was_sent_however_they_arrive(
                method in "GET|PUT|HEAD|DELETE|OPTIONS",
                path in "/[A-Za-z0-9/._~%?=&-]{0,60}",
                fields in proptest::collection::vec((token(), "[ -~]{0,40}"), 0..20),
                bare_lf in any::<bool>(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let eol = if bare_lf { "\n" } else { "\r\n" };
                // Framing fields have their own rules (tested above); keep them out.
                let fields: Vec<(String, String)> = fields
                    .into_iter()
                    .filter(|(name, _)| {
                        !["content-length", "transfer-encoding", "expect", "connection"]
                            .contains(&name.to_ascii_lowercase().as_str())
                    })
                    .collect();
                let mut raw = format!("{method} {path} HTTP/1.1{eol}");
                for (name, value) in &fields {
                    raw.push_str(&format!("{name}: {value}{eol}"));
                }
                raw.push_str(eol);
                raw.push_str("NEXT REQUEST");
                let raw = raw.as_bytes();
                let len = scan_in_pieces(raw, &cuts).unwrap().unwrap();
                prop_assert_eq!(&raw[len..], b"NEXT REQUEST");
                let mut headers = vec![HeaderSpan::default(); LIMITS.max_headers];
                let head = parse_head(&raw[..len], &mut headers).unwrap();
                prop_assert_eq!(head.method.str(raw), method.as_str());
                prop_assert_eq!(head.target.str(raw), path.as_str());
                prop_assert_eq!(head.headers, fields.len());
                prop_assert!(head.keep_alive);
                prop_assert_eq!(head.framing, Framing::None);
                for (field, (name, value)) in headers.iter().zip(&fields) {
                    prop_assert_eq!(field.name.str(raw), name.as_str());
                    prop_assert_eq!(field.value.str(raw), value.trim_matches([' ', '\t']));
                }
            }

            #[test]
            fn chunked_bodies_decode_to_what_was_sent_or_are_refused_when_too_large(
                body in proptest::collection::vec(any::<u8>(), 0..128),
                sizes in proptest::collection::vec(1usize..40, 1..10),
                extension in any::<bool>(),
                cuts in proptest::collection::vec(any::<usize>(), 0..8),
            ) {
                let mut encoded = Vec::new();
                let mut rest = body.as_slice();
                for size in sizes.iter().cycle() {
                    if rest.is_empty() {
                        break;
                    }
                    let take = (*size).min(rest.len());
                    let ext = if extension { ";a=b" } else { "" };
                    encoded.extend_from_slice(format!("{take:X}{ext}\r\n").as_bytes());
                    encoded.extend_from_slice(&rest[..take]);
                    encoded.extend_from_slice(b"\r\n");
                    rest = &rest[take..];
                }
                encoded.extend_from_slice(b"0\r\n\r\nNEXT");
                let capacity = 64;
                let mut out = vec![0; capacity];
                let mut written = 0;
                let mut decoder = ChunkedDecoder::default();
                let mut ends: Vec<usize> = cuts.iter().map(|c| c % (encoded.len() + 1)).collect();
                ends.push(encoded.len());
                ends.sort_unstable();
                let mut consumed = 0;
                let mut outcome = Ok(false);
                for end in ends {
                    if end <= consumed {
                        continue;
                    }
                    match decoder.feed(&encoded[consumed..end], &mut out, &mut written) {
                        Ok((used, done)) => {
                            consumed += used;
                            outcome = Ok(done);
                            if done {
                                break;
                            }
                        }
                        Err(err) => {
                            outcome = Err(err);
                            break;
                        }
                    }
                }
                if body.len() > capacity {
                    prop_assert_eq!(outcome, Err(ChunkError::TooLarge));
                } else {
                    prop_assert_eq!(outcome, Ok(true));
                    prop_assert_eq!(&out[..written], body.as_slice());
                    prop_assert_eq!(&encoded[consumed..], b"NEXT");
                }
            }

            #[test]
            fn chunked_decoding_of_any_bytes_never_writes_past_its_buffer(
                input in proptest::collection::vec(any::<u8>(), 0..2048),
            ) {
                let mut out = vec![0; 16];
                let mut written = 0;
                let _ = ChunkedDecoder::default().feed(&input, &mut out, &mut written);
                prop_assert!(written <= out.len());
            }
        }
    }
}
