//! How much memory the machine has free, so that a size mistake (`filters = 100000000`) is one clear error
//! before the allocation rather than the process aborting after it has grown for minutes.

use crate::{Error, Result};

/// Bytes the system reports as available (`MemAvailable` in /proc/meminfo); `None` where it cannot tell.
pub fn available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// "3.6 GiB": bytes for people.
pub fn human(bytes: f64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{v:.0} {}", units[u]) } else { format!("{v:.1} {}", units[u]) }
}

/// An error when `count` values of `bytes_each` (what: "a kernel of shape [3, 3, 1, 100000000]") would take
/// more than the memory available; nothing is allocated here.
pub fn check(count: u128, bytes_each: u128, what: &str) -> Result<()> {
    let need = count.saturating_mul(bytes_each);
    if let Some(avail) = available()
        && need > avail as u128
    {
        return Err(Error::Config(format!(
            "{what} needs {}, more than the {} of memory available",
            human(need as f64),
            human(avail as f64)
        )));
    }
    Ok(())
}
