//! Operation and status codes. Unknown values are kept, not rejected, so a
//! peer's unknown op can be answered with a reason instead of a dropped link.

/// A request's operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Op {
    /// 100: store a file, replacing any previous version of that name.
    Backup,
    /// 200: fetch a file.
    Restore,
    /// 201: remove a file.
    Delete,
    /// 202: list the user's file names.
    List,
    /// Any other code. Op 0 marks zero padding: the end of a session.
    Unknown(u8),
}

impl Op {
    /// Whether requests with this op carry `name_len` and `name`.
    pub const fn has_name(self) -> bool {
        matches!(self, Op::Backup | Op::Restore | Op::Delete)
    }

    /// Whether requests with this op carry `size` and a payload.
    pub const fn has_payload(self) -> bool {
        matches!(self, Op::Backup)
    }

    /// A short lowercase name for logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Op::Backup => "backup",
            Op::Restore => "restore",
            Op::Delete => "delete",
            Op::List => "list",
            Op::Unknown(_) => "unknown",
        }
    }
}

impl From<u8> for Op {
    fn from(code: u8) -> Self {
        match code {
            100 => Op::Backup,
            200 => Op::Restore,
            201 => Op::Delete,
            202 => Op::List,
            other => Op::Unknown(other),
        }
    }
}

impl From<Op> for u8 {
    fn from(op: Op) -> Self {
        match op {
            Op::Backup => 100,
            Op::Restore => 200,
            Op::Delete => 201,
            Op::List => 202,
            Op::Unknown(code) => code,
        }
    }
}

/// A response's status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status {
    /// 210: the file follows as the payload.
    Restored,
    /// 211: the payload is every name followed by `\n`, sorted by bytes.
    Listed,
    /// 212: backed up or deleted.
    Done,
    /// 1001: no file of that name.
    NotFound,
    /// 1002: the user has no files (list only).
    NoFiles,
    /// 1003: error; the payload is a short UTF-8 reason.
    Error,
    /// Any other code.
    Unknown(u16),
}

impl Status {
    /// Whether a response with this status may carry a payload. Servers may
    /// close right after the header fields of the others, so clients accept
    /// those cut short.
    pub const fn has_payload(self) -> bool {
        matches!(self, Status::Restored | Status::Listed | Status::Error)
    }

    /// The numeric code, for logs.
    pub fn code(self) -> u16 {
        self.into()
    }
}

impl From<u16> for Status {
    fn from(code: u16) -> Self {
        match code {
            210 => Status::Restored,
            211 => Status::Listed,
            212 => Status::Done,
            1001 => Status::NotFound,
            1002 => Status::NoFiles,
            1003 => Status::Error,
            other => Status::Unknown(other),
        }
    }
}

impl From<Status> for u16 {
    fn from(status: Status) -> Self {
        match status {
            Status::Restored => 210,
            Status::Listed => 211,
            Status::Done => 212,
            Status::NotFound => 1001,
            Status::NoFiles => 1002,
            Status::Error => 1003,
            Status::Unknown(code) => code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_code_round_trips_and_unknown_ones_are_kept() {
        for code in 0..=u8::MAX {
            assert_eq!(u8::from(Op::from(code)), code);
        }
        assert_eq!(Op::from(100), Op::Backup);
        assert_eq!(Op::from(202), Op::List);
        assert_eq!(Op::from(7), Op::Unknown(7));
    }

    #[test]
    fn every_status_code_round_trips_and_unknown_ones_are_kept() {
        for code in [0, 210, 211, 212, 1001, 1002, 1003, 1004, u16::MAX] {
            assert_eq!(u16::from(Status::from(code)), code);
        }
        assert_eq!(Status::from(1003), Status::Error);
        assert_eq!(Status::from(213), Status::Unknown(213));
    }
}
