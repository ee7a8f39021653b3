//! Line framing for serial streams: bytes in, complete lines out, with resynchronisation.
//!
//! A line ends at `\n` (a preceding `\r` is dropped). A line longer than the limit is garbage
//! (wrong baud rate, binary noise): its bytes are discarded up to the next `\n`, the framer
//! reports one `Overlong` and carries on with the next line, so one bad frame costs one frame.

/// What the framer produced for one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Line(String),
    /// The line was not valid UTF-8 (typically a baud-rate mismatch).
    NotText,
    /// The line exceeded the limit and was dropped up to the next newline.
    Overlong,
}

#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    max_line: usize,
    discarding: bool,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::with_capacity(max_line.min(4096)),
            max_line: max_line.max(1),
            discarding: false,
        }
    }

    /// Feeds bytes, appending every completed frame to `out`.
    pub fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) {
        for &b in bytes {
            if b == b'\n' {
                if self.discarding {
                    self.discarding = false;
                    out.push(Frame::Overlong);
                } else {
                    let mut line = std::mem::take(&mut self.buf);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    if !line.is_empty() {
                        out.push(match String::from_utf8(line) {
                            Ok(s) => Frame::Line(s),
                            Err(_) => Frame::NotText,
                        });
                    }
                }
                continue;
            }
            if self.discarding {
                continue;
            }
            if self.buf.len() >= self.max_line {
                self.buf.clear();
                self.discarding = true;
                continue;
            }
            self.buf.push(b);
        }
    }

    /// Drops a partial line (after a disconnect the rest of it will never come).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.discarding = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_across_chunks_and_strips_cr() {
        let mut f = LineFramer::new(64);
        let mut out = Vec::new();
        f.push(b"ab", &mut out);
        f.push(b"c\r\nde\n\n", &mut out);
        assert_eq!(
            out,
            vec![Frame::Line("abc".into()), Frame::Line("de".into())]
        );
    }

    #[test]
    fn resynchronises_after_garbage() {
        let mut f = LineFramer::new(8);
        let mut out = Vec::new();
        f.push(b"0123456789ABCDEF\nok\n\xff\xfe\nfine\n", &mut out);
        assert_eq!(
            out,
            vec![
                Frame::Overlong,
                Frame::Line("ok".into()),
                Frame::NotText,
                Frame::Line("fine".into())
            ]
        );
        f.push(b"partial", &mut out);
        f.reset();
        f.push(b"x\n", &mut out);
        assert_eq!(out.last(), Some(&Frame::Line("x".into())));
    }
}
