//! Polling for a condition with a deadline: tests wait for facts, never for fixed sleeps.

use std::time::{Duration, Instant};

/// A condition did not become true in time.
#[derive(Debug, thiserror::Error)]
#[error("timed out after {waited:?} waiting for {what}")]
pub struct WaitTimeout {
    pub what: String,
    pub waited: Duration,
}

/// Polls `cond` (every 20 ms growing to 250 ms) until it returns true or `timeout` passes.
/// The condition is checked one last time at the deadline. Returns how long it took.
pub fn try_wait_until(
    timeout: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<Duration, WaitTimeout> {
    let start = Instant::now();
    let mut pause = Duration::from_millis(20);
    loop {
        if cond() {
            return Ok(start.elapsed());
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return Err(WaitTimeout {
                what: what.to_string(),
                waited: elapsed,
            });
        }
        std::thread::sleep(pause.min(timeout - elapsed));
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Like [`try_wait_until`] but panics (at the caller's line) on timeout.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, cond: impl FnMut() -> bool) -> Duration {
    match try_wait_until(timeout, what, cond) {
        Ok(took) => took,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_when_condition_holds() {
        let mut calls = 0;
        let took = try_wait_until(Duration::from_secs(5), "third call", || {
            calls += 1;
            calls >= 3
        })
        .unwrap();
        assert_eq!(calls, 3);
        assert!(took < Duration::from_secs(5));
    }

    #[test]
    fn times_out_with_the_condition_name() {
        let err = try_wait_until(Duration::from_millis(60), "never", || false).unwrap_err();
        assert!(err.waited >= Duration::from_millis(60));
        assert!(err.to_string().contains("never"), "{err}");
    }
}
