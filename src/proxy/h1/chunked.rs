//! A strict decoder for `Transfer-Encoding: chunked` bodies. Wakeway decodes every chunked body it
//! forwards and writes its own framing, so the next hop sees the boundaries wakeway saw and never
//! an extension, whitespace or bare LF that it might read differently. Trailers are dropped.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting the first hex digit of a size.
    SizeStart,
    Size,
    /// After `;`: an extension, skipped up to CR.
    Ext,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

const MAX_LINE: usize = 4096;

#[derive(Debug)]
pub struct Decoder {
    state: State,
    remaining: u64,
    digits: u8,
    line: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            state: State::SizeStart,
            remaining: 0,
            digits: 0,
            line: 0,
        }
    }
}

impl Decoder {
    /// The byte a line or a chunk's data must end with (`want`), then `next`; anything else is
    /// refused (`why`).
    fn line_end(
        &mut self,
        b: u8,
        want: u8,
        next: State,
        why: &'static str,
    ) -> Result<(), ChunkError> {
        if b != want {
            return Err(ChunkError(why));
        }
        self.state = next;
        Ok(())
    }

    /// One byte of a line wakeway reads past (a chunk extension, a trailer): CR ends it, then
    /// `lf`; a control character (`control`) or a line over `MAX_LINE` (`too_long`) is refused.
    fn line_byte(
        &mut self,
        b: u8,
        lf: State,
        control: &'static str,
        too_long: &'static str,
    ) -> Result<(), ChunkError> {
        if b == b'\r' {
            self.state = lf;
        } else if b == b'\n' || (b < 0x20 && b != b'\t') || b == 0x7f {
            return Err(ChunkError(control));
        } else {
            self.line += 1;
            if self.line > MAX_LINE {
                return Err(ChunkError(too_long));
            }
        }
        Ok(())
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes what it can of `input`, handing each run of body bytes to `data`. Returns how many
    /// bytes it consumed; at the end of the body it stops right after the final CRLF, so whatever
    /// follows (a pipelined request) stays unread.
    pub fn decode(
        &mut self,
        input: &[u8],
        mut data: impl FnMut(&[u8]),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            match self.state {
                State::Done => return Ok(i),
                State::Data => {
                    let n = (input.len() - i).min(self.remaining as usize);
                    data(&input[i..i + n]);
                    self.remaining -= n as u64;
                    i += n;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::SizeStart | State::Size => match hex(b) {
                    Some(d) => {
                        self.digits += 1;
                        if self.digits > 15 {
                            return Err(ChunkError("chunk size too large"));
                        }
                        self.remaining = self.remaining * 16 + d as u64;
                        self.state = State::Size;
                    }
                    None if self.state == State::SizeStart => {
                        return Err(ChunkError("chunk size is not a hex number"));
                    }
                    None if b == b';' => {
                        self.state = State::Ext;
                        self.line = 0;
                    }
                    None if b == b'\r' => self.state = State::SizeLf,
                    None => return Err(ChunkError("chunk size is not a hex number")),
                },
                State::Ext => self.line_byte(
                    b,
                    State::SizeLf,
                    "control character in a chunk extension",
                    "chunk extension too long",
                )?,
                State::SizeLf => {
                    let next = if self.remaining == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                    self.line_end(b, b'\n', next, "chunk size line does not end with CRLF")?;
                    self.digits = 0;
                }
                State::DataCr => self.line_end(
                    b,
                    b'\r',
                    State::DataLf,
                    "chunk data is not followed by CRLF",
                )?,
                State::DataLf => self.line_end(
                    b,
                    b'\n',
                    State::SizeStart,
                    "chunk data is not followed by CRLF",
                )?,
                State::TrailerStart => {
                    if b == b'\r' {
                        self.state = State::FinalLf;
                    } else if b == b'\n' {
                        return Err(ChunkError("bare LF in the trailer section"));
                    } else {
                        self.state = State::Trailer;
                        self.line = 1;
                    }
                }
                State::Trailer => self.line_byte(
                    b,
                    State::TrailerLf,
                    "control character in a trailer",
                    "trailer line too long",
                )?,
                State::TrailerLf => self.line_end(
                    b,
                    b'\n',
                    State::TrailerStart,
                    "trailer line does not end with CRLF",
                )?,
                State::FinalLf => {
                    let why = "chunked body does not end with CRLF";
                    self.line_end(b, b'\n', State::Done, why)?;
                    return Ok(i + 1);
                }
            }
            i += 1;
        }
        Ok(i)
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends one chunk in wakeway's own framing.
pub fn encode_chunk(out: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut n = data.len();
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        let n = d.decode(input, |b| out.extend_from_slice(b))?;
        assert!(d.is_done(), "not done: {input:?}");
        Ok((out, n))
    }

    #[test]
    fn decodes_and_stops_at_the_end() {
        let (out, n) =
            decode_all(b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET /").unwrap();
        assert_eq!(out, b"hello world");
        assert_eq!(
            n,
            b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nX-T: 1\r\n\r\n".len()
        );
    }

    #[test]
    fn byte_at_a_time_is_the_same() {
        let input = b"3\r\nabc\r\n0\r\n\r\n";
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for b in input.chunks(1) {
            assert_eq!(d.decode(b, |x| out.extend_from_slice(x)).unwrap(), 1);
        }
        assert!(d.is_done());
        assert_eq!(out, b"abc");
    }

    #[test]
    fn rejects_what_others_read_differently() {
        for bad in [
            &b"-1\r\n"[..],
            b"+5\r\nhello\r\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n",
            b"ffffffffffffffff\r\n",
            b"5;a\nb\r\nhello\r\n0\r\n\r\n",
            b"0\r\n\n",
        ] {
            let mut d = Decoder::default();
            assert!(
                d.decode(bad, |_| {}).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn encodes() {
        let mut out = Vec::new();
        encode_chunk(&mut out, b"hello world, this is long");
        assert_eq!(out, b"19\r\nhello world, this is long\r\n");
    }
}
