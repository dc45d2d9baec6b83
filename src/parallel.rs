//! Running independent jobs (one per input file) on several threads while delivering their
//! results in input order, with bounded memory.
//!
//! [`ordered`] hands job indices to worker threads and gives each result to the caller's
//! consumer on the calling thread, strictly in index order. A worker may run ahead of the
//! consumer by at most `window` jobs, so however many files there are, at most `window`
//! results wait in memory. [`SpillBuffer`] keeps a job's output in memory up to a limit and in
//! an anonymous temporary file beyond it, so one file with millions of findings does not grow
//! the heap either. This module knows nothing of X12: the CLI wires it to `check` and
//! `convert`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{mpsc, Condvar, Mutex};

/// Runs `work(i)` for every `i` in `0..n` on up to `threads` threads and calls `consume(i, r)`
/// on the calling thread in order `0, 1, 2...`. No job starts more than `window` places ahead
/// of the next result to consume.
pub fn ordered<T, W, C>(n: usize, threads: usize, window: usize, work: W, mut consume: C)
where
    T: Send,
    W: Fn(usize) -> T + Sync,
    C: FnMut(usize, T),
{
    let threads = threads.clamp(1, n.max(1));
    let window = window.max(threads);
    if threads == 1 {
        for i in 0..n {
            consume(i, work(i));
        }
        return;
    }
    // (next job to hand out, next result to consume)
    let state = Mutex::new((0usize, 0usize));
    let moved = Condvar::new();
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::scope(|s| {
        for _ in 0..threads {
            let tx = tx.clone();
            let (state, moved, work) = (&state, &moved, &work);
            s.spawn(move || loop {
                let i = {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    while st.0 < n && st.0 >= st.1 + window {
                        st = moved.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    if st.0 >= n {
                        return;
                    }
                    st.0 += 1;
                    st.0 - 1
                };
                if tx.send((i, work(i))).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        let mut waiting = BTreeMap::new();
        let mut next = 0usize;
        for (i, r) in rx {
            waiting.insert(i, r);
            while let Some(r) = waiting.remove(&next) {
                consume(next, r);
                next += 1;
                state.lock().unwrap_or_else(|e| e.into_inner()).1 = next;
                moved.notify_all();
            }
        }
    });
}

/// A byte buffer that holds up to `limit` bytes in memory and the rest in an anonymous
/// temporary file (deleted when dropped).
pub struct SpillBuffer {
    mem: Vec<u8>,
    limit: usize,
    file: Option<File>,
}

impl SpillBuffer {
    pub fn new(limit: usize) -> SpillBuffer {
        SpillBuffer {
            mem: Vec::new(),
            limit,
            file: None,
        }
    }

    /// Copies everything written, in order, to `out`.
    pub fn copy_to<W: Write + ?Sized>(self, out: &mut W) -> io::Result<()> {
        out.write_all(&self.mem)?;
        if let Some(mut f) = self.file {
            f.seek(SeekFrom::Start(0))?;
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
            }
        }
        Ok(())
    }
}

impl Write for SpillBuffer {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if let Some(f) = &mut self.file {
            return f.write(b);
        }
        if self.mem.len() + b.len() <= self.limit {
            self.mem.extend_from_slice(b);
            return Ok(b.len());
        }
        let mut f = tempfile::tempfile()?;
        f.write_all(b)?;
        self.file = Some(f);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_timing() {
        let mut seen = Vec::new();
        ordered(
            50,
            4,
            3,
            |i| {
                // Later jobs finish first.
                std::thread::sleep(std::time::Duration::from_micros(((50 - i) * 50) as u64));
                i * 2
            },
            |i, r| seen.push((i, r)),
        );
        assert_eq!(seen, (0..50).map(|i| (i, i * 2)).collect::<Vec<_>>());
    }

    #[test]
    fn spill_buffer_keeps_order_across_the_limit() {
        let mut b = SpillBuffer::new(10);
        b.write_all(b"0123456").unwrap();
        b.write_all(b"789abcdef").unwrap();
        b.write_all(b"XYZ").unwrap();
        let mut out = Vec::new();
        b.copy_to(&mut out).unwrap();
        assert_eq!(out, b"0123456789abcdefXYZ");
    }
}
