//! Rate-limited log records of the inspector.

/// A log record for the node to write; `warn` false means informational (rule logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub warn: bool,
    pub message: String,
}

/// What a log record is about; each category has its own budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    Rule,
    OutOfState,
    TableFull,
    NatExhausted,
    /// Handshake sequence mismatches (their own budget: a forged-ACK flood does not silence the
    /// other out-of-state records).
    Handshake,
}

/// Records allowed per category per second (also the burst).
const PER_SECOND: u32 = 20;

#[derive(Debug, Default, Clone, Copy)]
struct Bucket {
    second: u64,
    used: u32,
    suppressed: u64,
}

/// A budget of [`PER_SECOND`] records per category per second of `now`.
#[derive(Debug, Default)]
pub struct Limiter {
    buckets: [Bucket; 5],
}

impl Limiter {
    /// `Some(suppressed since the last allowed record)` when a record may be written now.
    pub fn allow(&mut self, cat: Category, now_ms: u64) -> Option<u64> {
        let b = &mut self.buckets[cat as usize];
        let second = now_ms / 1000;
        if second != b.second {
            b.second = second;
            b.used = 0;
        }
        if b.used >= PER_SECOND {
            b.suppressed += 1;
            return None;
        }
        b.used += 1;
        Some(std::mem::take(&mut b.suppressed))
    }
}
