//! Reading one answer: the response decoder plus the client's checks (the
//! name an answer carries, the 1003 reason, whether the connection may be
//! reused). Fed bytes, it says what arrived; it never reads by itself.

use super::fault::Fault;
use crate::codec::{Decoded, ResponseDecoder, ResponseEnd};
use crate::error::ProtocolError;
use crate::wire::{MAX_REASON_LEN, PROTOCOL_VERSION, Response, Status};

/// Something an answer delivered to the caller.
pub(crate) enum Event<'a> {
    /// The header is in: a 1003's reason is collected here, not delivered.
    Header { status: Status, size: u32, name: &'a [u8] },
    /// Payload bytes of a 210 or 211.
    Payload(&'a [u8]),
}

/// What an answer came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Its status (never 1003: that is [`Fault::Server`]).
    pub status: Status,
    /// The server answered version 2 and the answer was whole: the
    /// connection may carry the next request.
    pub reusable: bool,
}

/// The reason a server gave with a 1003 response (at most 255 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
struct ServerReason {
    bytes: [u8; MAX_REASON_LEN],
    len: usize,
}

impl ServerReason {
    const fn new() -> Self {
        ServerReason { bytes: [0; MAX_REASON_LEN], len: 0 }
    }

    /// Keeps as much of `more` as fits.
    fn extend(&mut self, more: &[u8]) {
        let take = more.len().min(MAX_REASON_LEN - self.len);
        if let (Some(dst), Some(src)) = (self.bytes.get_mut(self.len..self.len + take), more.get(..take)) {
            dst.copy_from_slice(src);
            self.len += take;
        }
    }

    /// The reason as text: its longest valid UTF-8 prefix, without trailing NULs.
    fn as_str(&self) -> &str {
        let bytes = self.bytes.get(..self.len).unwrap_or(&[]);
        let text = match core::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => core::str::from_utf8(bytes.get(..e.valid_up_to()).unwrap_or(&[])).unwrap_or(""),
        };
        text.trim_end_matches('\0')
    }
}

/// A 210, 212 or 1001 names the file it answers; one that names another
/// file than the request is not this request's answer. The names are
/// compared where they lie, in the decoder and the caller's `&str`: no copy.
#[inline(always)]
pub(crate) fn check_echo(header: &Response<'_>, expected: &[u8]) -> Result<(), ProtocolError> {
    let names_a_file = matches!(header.status, Status::Restored | Status::Done | Status::NotFound);
    if names_a_file && header.name != expected { Err(ProtocolError::NameMismatch) } else { Ok(()) }
}

/// Reads one answer at a time. The shell reads at most [`needed`](Self::needed)
/// bytes, hands them to [`feed`](Self::feed), and on end of input calls
/// [`closed`](Self::closed); once `needed` is 0, [`verdict`](Self::verdict)
/// says what the answer came to.
pub(crate) struct AnswerReader {
    decoder: ResponseDecoder,
    reason: ServerReason,
    /// The server stopped after a short form (an older server's way).
    ended_early: bool,
}

impl AnswerReader {
    pub(crate) const fn new() -> Self {
        AnswerReader { decoder: ResponseDecoder::new(), reason: ServerReason::new(), ended_early: false }
    }

    /// Starts on the next answer.
    pub(crate) fn start(&mut self) {
        self.decoder.reset();
        self.reason.len = 0;
        self.ended_early = false;
    }

    /// Bytes wanted next; 0 once the answer is complete.
    pub(crate) fn needed(&self) -> usize {
        // After a short form, `closed` has marked the decoder complete.
        self.decoder.needed()
    }

    /// Takes bytes read (at most `needed()` of them). A 210, 212 or 1001
    /// must name `expected`, if given: checked before the header is
    /// delivered, so no byte of another file reaches the caller's sink.
    pub(crate) fn feed<'a>(
        &'a mut self,
        input: &'a [u8],
        expected: Option<&[u8]>,
    ) -> Result<Option<Event<'a>>, Fault> {
        match self.decoder.feed(input)? {
            (_, Decoded::Header) => {
                let Some(h) = self.decoder.header() else { return Ok(None) };
                if let Some(expected) = expected {
                    check_echo(&h, expected)?;
                }
                Ok(Some(Event::Header { status: h.status, size: h.size, name: h.name }))
            }
            (_, Decoded::Payload(chunk)) => match self.decoder.header().map(|h| h.status) {
                Some(Status::Error) => {
                    self.reason.extend(chunk);
                    Ok(None)
                }
                _ => Ok(Some(Event::Payload(chunk))),
            },
            _ => Ok(None),
        }
    }

    /// The peer closed its side: a clean end only if the answer is whole or
    /// a short form older servers send.
    pub(crate) fn closed(&mut self) -> Result<(), Fault> {
        match self.decoder.finish()? {
            ResponseEnd::Nothing => Err(Fault::Closed),
            ResponseEnd::Complete => {
                self.ended_early = true;
                Ok(())
            }
        }
    }

    /// What the complete answer came to. A short form is checked against
    /// `expected` here, its header being known only at its end.
    pub(crate) fn verdict(&self, expected: Option<&[u8]>) -> Result<Verdict, Fault> {
        let header = self.decoder.header().ok_or(ProtocolError::Truncated)?;
        if let (Some(expected), true) = (expected, self.ended_early) {
            check_echo(&header, expected)?;
        }
        if header.status == Status::Error {
            return Err(Fault::Server);
        }
        Ok(Verdict {
            status: header.status,
            reusable: header.version >= PROTOCOL_VERSION && !self.ended_early,
        })
    }

    /// The header of the answer read last, if it is in.
    pub(crate) fn header(&self) -> Option<Response<'_>> {
        self.decoder.header()
    }

    /// The reason the last 1003 gave; empty if none.
    pub(crate) fn reason(&self) -> &str {
        self.reason.as_str()
    }
}
