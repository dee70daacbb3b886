//! A small bounded pool for the card calls of a run.
//!
//! A CCA coprocessor takes from a fraction of a millisecond to several milliseconds
//! per verb, and IBM's CCA host library may be called from several threads at once,
//! so the re-encipher verbs of a run are issued from up to `threads` threads. Only
//! the verb calls run here: every line is printed, and every result applied, by the
//! caller afterwards in the run's own order, so the output, the counting and the
//! checks are the same whatever the number of threads.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

/// How many verbs run at once by default.
pub const DEFAULT_THREADS: usize = 4;

/// A bound on how many callers are inside at once (a counting semaphore): the verbs
/// in flight on the card are bounded by it, while the pool's other threads go on
/// reading and writing the store.
pub(crate) struct Gate {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A place inside a [`Gate`], given back when dropped.
pub(crate) struct Inside<'g>(&'g Gate);

impl Gate {
    /// A gate with `places` places.
    pub(crate) fn new(places: NonZeroUsize) -> Gate {
        Gate {
            free: Mutex::new(places.get()),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free place and takes it.
    pub(crate) fn enter(&self) -> Inside<'_> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
        Inside(self)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        let mut free = self.0.free.lock().unwrap_or_else(|p| p.into_inner());
        *free += 1;
        self.0.freed.notify_one();
    }
}

/// The threads of a pool whose work is `verbs` card calls at once plus the CPU and
/// disk work around them: one more thread per processor, so that while every verb
/// place waits for the card, the store is still read and written. One verb at a time
/// (`--threads 1`) means everything on one thread, in order.
pub(crate) fn threads_around(verbs: NonZeroUsize) -> NonZeroUsize {
    if verbs.get() == 1 {
        return verbs;
    }
    let cpus = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    verbs.saturating_add(cpus)
}

/// How often the caller's progress callback runs while the pool works.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Applies `work` to every item of `items` on up to `threads` threads and returns the
/// results in the order of `items`. `progress(done)` is called on the calling thread
/// now and then while the work goes on (and once at the end). With one thread (or
/// one item) everything runs on the calling thread, in order.
pub(crate) fn map_in_order<T, R, F>(
    items: &[T],
    threads: NonZeroUsize,
    work: F,
    mut progress: impl FnMut(usize),
) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let workers = threads.get().min(items.len());
    if workers <= 1 {
        let mut out = Vec::with_capacity(items.len());
        for (done, item) in items.iter().enumerate() {
            if done % 64 == 0 {
                progress(done);
            }
            out.push(work(item));
        }
        progress(items.len());
        return out;
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let (Some(item), Some(slot)) = (items.get(i), slots.get(i)) else {
                        break;
                    };
                    let r = work(item);
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                    done.fetch_add(1, Ordering::Release);
                })
            })
            .collect();
        while handles.iter().any(|h| !h.is_finished()) {
            progress(done.load(Ordering::Acquire));
            std::thread::park_timeout(PROGRESS_EVERY);
        }
        for h in handles {
            if let Err(panic) = h.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    progress(items.len());
    slots
        .into_iter()
        .filter_map(|s| s.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn n(k: usize) -> NonZeroUsize {
        NonZeroUsize::new(k).unwrap()
    }

    #[test]
    fn results_keep_the_order_of_the_items_whatever_the_threads() {
        let items: Vec<u64> = (0..500).collect();
        for threads in [1, 2, 4, 7] {
            let got = map_in_order(&items, n(threads), |x| x * 3, |_| {});
            assert_eq!(got, items.iter().map(|x| x * 3).collect::<Vec<_>>());
        }
    }

    #[test]
    fn every_item_is_worked_once_and_progress_ends_at_the_count() {
        let calls = AtomicUsize::new(0);
        let items = vec![(); 97];
        let mut last = None;
        let got = map_in_order(
            &items,
            n(4),
            |_| calls.fetch_add(1, Ordering::Relaxed),
            |d| last = Some(d),
        );
        assert_eq!(got.len(), 97);
        assert_eq!(calls.load(Ordering::Relaxed), 97);
        assert_eq!(last, Some(97));
        let mut seen = got.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..97).collect::<Vec<_>>());
    }

    #[test]
    fn calls_overlap_when_threads_allow() {
        // Each call waits until `threads` calls are inside at once: with a serial
        // pool this would never finish, so the pool really runs them together.
        let inside = AtomicUsize::new(0);
        let items = vec![(); 8];
        map_in_order(
            &items,
            n(4),
            |_| {
                inside.fetch_add(1, Ordering::SeqCst);
                while inside.load(Ordering::SeqCst) < 4 {
                    std::thread::yield_now();
                }
            },
            |_| {},
        );
    }

    #[test]
    fn a_gate_lets_no_more_than_its_places_inside() {
        let gate = Gate::new(n(3));
        let inside = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items = vec![(); 64];
        map_in_order(
            &items,
            n(8),
            |_| {
                let _place = gate.enter();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::yield_now();
                inside.fetch_sub(1, Ordering::SeqCst);
            },
            |_| {},
        );
        assert!(most.load(Ordering::SeqCst) <= 3);
        assert_eq!(*gate.free.lock().unwrap(), 3, "every place given back");
    }

    #[test]
    fn no_items_no_threads() {
        let got: Vec<u8> = map_in_order(&[] as &[u8], n(4), |x| *x, |_| {});
        assert!(got.is_empty());
    }
}
