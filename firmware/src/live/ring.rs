//! A lock-free single-producer/single-consumer ring of interleaved audio samples over one
//! buffer allocated up front.
//!
//! The render side pushes, the playback thread pops. Neither side ever allocates, locks
//! or blocks: `push` takes what fits and says how much, `pop` gives what is there. Why our
//! own ring rather than `heapless::spsc::Queue`: that queue's capacity is a const generic,
//! so a one-second stereo ring (96,000 samples) would be built on the stack before it could
//! be boxed, and the capacity could not follow the config; this ring takes its capacity at
//! run time and works on slices, so a whole period moves with two `memcpy`s.
//!
//! Correctness: the classic Lamport queue. `head` (next slot to read) is written only by
//! the consumer, `tail` (next slot to write) only by the producer; both count samples
//! without wrapping modulo the capacity (they are `usize`, and 2^64 samples at 96 kHz is
//! six million years), so full and empty are told apart without a spare slot. A side
//! publishes with `Release` after touching the slots and reads the other side's index
//! with `Acquire` before touching them.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

struct Shared {
    buf: Box<[UnsafeCell<f32>]>,
    /// Samples read so far (consumer-owned).
    head: AtomicUsize,
    /// Samples written so far (producer-owned).
    tail: AtomicUsize,
    /// The producer has finished: the consumer plays what is left and stops.
    closed: AtomicBool,
}

// SAFETY: the slots between `head` and `tail` belong to the consumer, the others to the
// producer; the Acquire/Release pairs on the indices hand slots over, so no slot is
// touched by both sides at once. Only one `Producer` and one `Consumer` exist per ring.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

/// The writing end of a ring (one per ring; the render side).
pub struct Producer {
    shared: Arc<Shared>,
}

/// The reading end of a ring (one per ring; the playback thread).
pub struct Consumer {
    shared: Arc<Shared>,
}

/// Makes a ring holding `capacity` samples (interleaved: frames × channels) and its two ends.
///
/// # Panics
/// When `capacity` is 0.
pub fn ring(capacity: usize) -> (Producer, Consumer) {
    assert!(capacity > 0, "a ring needs room for at least one sample");
    let buf: Box<[UnsafeCell<f32>]> = (0..capacity).map(|_| UnsafeCell::new(0.0)).collect();
    let shared = Arc::new(Shared {
        buf,
        head: AtomicUsize::new(0),
        tail: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    (
        Producer {
            shared: shared.clone(),
        },
        Consumer { shared },
    )
}

impl Shared {
    fn capacity(&self) -> usize {
        self.buf.len()
    }

    fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        tail.wrapping_sub(head)
    }

    /// Raw pointer to slot `i` (modulo the capacity), derived from the whole buffer so
    /// that copies running on from it stay inside its provenance.
    fn slot(&self, i: usize) -> *mut f32 {
        // SAFETY: `i % capacity` is in bounds.
        unsafe { UnsafeCell::raw_get(self.buf.as_ptr()).add(i % self.capacity()) }
    }
}

impl Producer {
    /// Room for this many more samples.
    pub fn free(&self) -> usize {
        self.shared.capacity() - self.shared.len()
    }

    /// Samples waiting to be read.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no sample waits to be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's size in samples.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Copies as many samples of `data` as fit; returns how many were taken.
    pub fn push(&mut self, data: &[f32]) -> usize {
        let s = &*self.shared;
        let tail = s.tail.load(Ordering::Relaxed);
        let head = s.head.load(Ordering::Acquire);
        let free = s.capacity() - tail.wrapping_sub(head);
        let n = free.min(data.len());
        let cap = s.capacity();
        let start = tail % cap;
        let first = n.min(cap - start);
        // SAFETY: slots tail..tail+n are free (not between head and tail), so only this
        // producer touches them until the Release store below hands them over.
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), s.slot(start), first);
            std::ptr::copy_nonoverlapping(data.as_ptr().add(first), s.slot(0), n - first);
        }
        s.tail.store(tail.wrapping_add(n), Ordering::Release);
        n
    }

    /// Tells the consumer no more samples will come: it plays what is left, then stops.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.close();
    }
}

impl Consumer {
    /// Samples waiting to be read.
    pub fn len(&self) -> usize {
        self.shared.len()
    }

    /// Whether no sample waits to be read.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ring's size in samples.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// Whether the producer has finished (what is still in the ring is the last audio).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Moves up to `out.len()` samples into `out`; returns how many.
    pub fn pop(&mut self, out: &mut [f32]) -> usize {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        let tail = s.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(out.len());
        let cap = s.capacity();
        let start = head % cap;
        let first = n.min(cap - start);
        // SAFETY: slots head..head+n were published by the producer's Release store of
        // `tail`, and stay ours until the Release store of `head` below.
        unsafe {
            std::ptr::copy_nonoverlapping(s.slot(start), out.as_mut_ptr(), first);
            std::ptr::copy_nonoverlapping(s.slot(0), out.as_mut_ptr().add(first), n - first);
        }
        s.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }

    /// Drops up to `n` samples without reading them (used while the audio device is gone,
    /// so the engine's clock keeps running); returns how many.
    pub fn skip(&mut self, n: usize) -> usize {
        let s = &*self.shared;
        let head = s.head.load(Ordering::Relaxed);
        let tail = s.tail.load(Ordering::Acquire);
        let n = tail.wrapping_sub(head).min(n);
        s.head.store(head.wrapping_add(n), Ordering::Release);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_pop_wraps_and_keeps_order() {
        let (mut p, mut c) = ring(7);
        let mut next = 0.0f32;
        let mut expect = 0.0f32;
        let mut out = [0.0f32; 5];
        // Uneven chunk sizes walk the indices across the wrap point many times.
        for round in 0..50 {
            let chunk: Vec<f32> = (0..(round % 6))
                .map(|_| {
                    next += 1.0;
                    next
                })
                .collect();
            let taken = p.push(&chunk);
            // What did not fit is pushed back into the generator.
            next -= (chunk.len() - taken) as f32;
            assert!(p.len() <= 7);
            let got = c.pop(&mut out[..(round % 4) + 1]);
            for v in &out[..got] {
                expect += 1.0;
                assert_eq!(*v, expect);
            }
        }
    }

    #[test]
    fn full_ring_takes_nothing_and_empty_gives_nothing() {
        let (mut p, mut c) = ring(4);
        assert_eq!(p.push(&[1.0, 2.0, 3.0, 4.0, 5.0]), 4);
        assert_eq!(p.free(), 0);
        assert_eq!(p.push(&[6.0]), 0);
        let mut out = [0.0; 8];
        assert_eq!(c.pop(&mut out), 4);
        assert_eq!(&out[..4], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.pop(&mut out), 0);
        assert!(c.is_empty());
    }

    #[test]
    fn skip_drops_samples_and_close_is_seen() {
        let (mut p, mut c) = ring(8);
        p.push(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(c.skip(3), 3);
        let mut out = [0.0; 4];
        assert_eq!(c.pop(&mut out), 1);
        assert_eq!(out[0], 4.0);
        assert!(!c.is_closed());
        drop(p);
        assert!(c.is_closed());
    }

    /// Two threads, a small ring, ten million-ish samples: every sample arrives once and in
    /// order. Spins (yield) instead of sleeping; the count, not the timing, is asserted.
    #[test]
    fn two_threads_move_every_sample_in_order() {
        const TOTAL: usize = 2_000_000;
        let (mut p, mut c) = ring(1000);
        let producer = std::thread::spawn(move || {
            let mut i = 0usize;
            let mut chunk = [0.0f32; 333];
            while i < TOTAL {
                let n = chunk.len().min(TOTAL - i);
                for (k, v) in chunk[..n].iter_mut().enumerate() {
                    // Exact in f32 up to 2^24: wrap the counter there.
                    *v = ((i + k) % (1 << 24)) as f32;
                }
                let mut off = 0;
                while off < n {
                    let got = p.push(&chunk[off..n]);
                    off += got;
                    if got == 0 {
                        std::thread::yield_now();
                    }
                }
                i += n;
            }
        });
        let mut seen = 0usize;
        let mut out = [0.0f32; 257];
        while seen < TOTAL {
            let n = c.pop(&mut out);
            for v in &out[..n] {
                assert_eq!(*v, (seen % (1 << 24)) as f32);
                seen += 1;
            }
            if n == 0 {
                if c.is_closed() && c.is_empty() {
                    break;
                }
                std::thread::yield_now();
            }
        }
        producer.join().unwrap();
        assert_eq!(seen, TOTAL);
    }
}
