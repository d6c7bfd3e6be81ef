//! The frame pipeline: several frames recognised at once, one per worker thread, each
//! worker single-threaded (`recognition.workers`).
//!
//! The vision thread reads the camera and [`submit`](Pool::submit)s each frame. A free
//! worker takes it; while every worker is busy, one frame waits. A newer frame replaces
//! the waiting one (the oldest is dropped, never the newest, and counted in
//! `facelock_frames_dropped_total`). Results reach the door loop in the order the camera
//! delivered their frames: a worker that finishes early holds its result until the frames
//! before it are delivered. A worker whose recognition fails, or panics, delivers the
//! failure in its place ([`Input::RecognitionFailed`](super::Input)), so the door loop
//! discards the confirmation and the order never stalls. At most two frames per worker are
//! taken and not yet delivered; a frame whose recognition hangs therefore holds back a
//! bounded number of results, and [`Pool::stalled`] tells the vision thread to stop
//! beating its heartbeat, so systemd's watchdog restarts the service (locked).
//!
//! Why whole frames per worker rather than a detect stage feeding an embed stage: FaceNet
//! is about 60 % of a frame with one face, so two stages can never run more than 1/0.6 ≈
//! 1.7× faster than one thread, and three confirming frames still pay for three embeddings
//! one after another. Workers that each take a whole frame scale with the cores, and the
//! unlock waits for (N − 1) frame intervals plus one frame's recognition when there are at
//! least N workers (with fewer, for the slower of the camera and recognition ÷ workers).

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::metrics::Metrics;
use crate::recognizer::{FrameResult, FrameWorker};

use super::delivery::{Delivery, Gone, Job};

/// Hands frames to the workers and delivers their results in order.
pub(super) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

struct Shared {
    slot: Mutex<Slot>,
    /// Signalled when a frame waits, or on stop.
    waiting: Condvar,
    order: Mutex<Order>,
    delivery: Arc<Mutex<Delivery>>,
    metrics: Arc<Metrics>,
}

struct Slot {
    /// The frame waiting for a worker.
    pending: Option<Job>,
    /// The sequence number of the next frame a worker takes.
    next: u64,
    /// The frames taken and not yet delivered, with when they were taken.
    undelivered: BTreeMap<u64, Instant>,
    /// At most this many of them (two per worker).
    limit: usize,
    stop: bool,
    /// The door loop has gone.
    gone: bool,
}

#[derive(Default)]
struct Order {
    /// The sequence number of the next result to deliver.
    next: u64,
    /// Results that finished before an earlier frame's.
    done: BTreeMap<u64, (Job, Result<FrameResult>)>,
}

impl Pool {
    /// Starts one thread per worker.
    pub fn start(
        workers: Vec<Box<dyn FrameWorker>>,
        delivery: Arc<Mutex<Delivery>>,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<Pool> {
        let shared = Arc::new(Shared {
            slot: Mutex::new(Slot {
                pending: None,
                next: 0,
                undelivered: BTreeMap::new(),
                limit: 2 * workers.len().max(1),
                stop: false,
                gone: false,
            }),
            waiting: Condvar::new(),
            order: Mutex::new(Order::default()),
            delivery,
            metrics,
        });
        let mut pool = Pool {
            shared: shared.clone(),
            threads: Vec::new(),
        };
        for (i, worker) in workers.into_iter().enumerate() {
            let shared = shared.clone();
            let thread = std::thread::Builder::new()
                .name(format!("recognize-{i}"))
                .spawn(move || {
                    if catch_unwind(AssertUnwindSafe(|| work(&shared, worker))).is_err() {
                        // Its frame stays undelivered: `stalled` reports it in time.
                        log::error!("recognition worker {i} stopped after a panic");
                    }
                })?;
            pool.threads.push(thread);
        }
        Ok(pool)
    }

    /// Hands a frame to the next free worker. A frame still waiting for one is dropped
    /// in favour of this newer one. `Err` once the door loop has gone.
    pub fn submit(&self, job: Job) -> Result<(), Gone> {
        let mut slot = lock(&self.shared.slot);
        if slot.gone {
            return Err(Gone);
        }
        if slot.pending.replace(job).is_some() {
            self.shared.metrics.frame_dropped();
            log::trace!("every recognition worker busy: the waiting frame was dropped");
        }
        drop(slot);
        self.shared.waiting.notify_one();
        Ok(())
    }

    /// How many workers run.
    pub fn workers(&self) -> u32 {
        self.threads.len() as u32
    }

    /// Whether every frame submitted so far has been delivered (none waiting, none being
    /// recognised, none held for order), or nothing more will be: the door loop has gone.
    pub fn idle(&self) -> bool {
        let slot = lock(&self.shared.slot);
        slot.gone || (slot.pending.is_none() && slot.undelivered.is_empty())
    }

    /// Whether the oldest frame not yet delivered was taken more than `limit` ago: a
    /// recognition that hangs, or a worker that died.
    pub fn stalled(&self, limit: Duration) -> bool {
        lock(&self.shared.slot)
            .undelivered
            .values()
            .next()
            .is_some_and(|taken| taken.elapsed() > limit)
    }
}

impl Drop for Pool {
    /// Stops the workers after their current frame (the service bounds how long it waits
    /// for the vision thread, and so for this).
    fn drop(&mut self) {
        lock(&self.shared.slot).stop = true;
        self.shared.waiting.notify_all();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One worker: take the waiting frame, recognise it, deliver in order.
fn work(shared: &Shared, mut worker: Box<dyn FrameWorker>) {
    loop {
        let (seq, job) = {
            let mut slot = lock(&shared.slot);
            loop {
                if slot.stop || slot.gone {
                    return;
                }
                if slot.undelivered.len() < slot.limit {
                    if let Some(job) = slot.pending.take() {
                        let seq = slot.next;
                        slot.next += 1;
                        slot.undelivered.insert(seq, Instant::now());
                        break (seq, job);
                    }
                }
                slot = shared
                    .waiting
                    .wait(slot)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        };
        let result = catch_unwind(AssertUnwindSafe(|| worker.recognize(&job.image)))
            .unwrap_or_else(|_| Err(anyhow!("the recognition worker panicked")));
        if deliver_in_order(shared, seq, job, result).is_err() {
            lock(&shared.slot).gone = true;
            shared.waiting.notify_all();
            return;
        }
    }
}

/// Delivers `seq`'s result, and every later one that was waiting for it, in order.
fn deliver_in_order(
    shared: &Shared,
    seq: u64,
    job: Job,
    result: Result<FrameResult>,
) -> Result<(), Gone> {
    let mut order = lock(&shared.order);
    order.done.insert(seq, (job, result));
    loop {
        let next = order.next;
        let Some((job, result)) = order.done.remove(&next) else {
            return Ok(());
        };
        order.next += 1;
        let delivered = lock(&shared.delivery).deliver(job, result);
        lock(&shared.slot).undelivered.remove(&next);
        // A worker may be waiting for the number of undelivered frames to go down.
        shared.waiting.notify_all();
        delivered?;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc::{self, Receiver};
    use std::time::{Duration, Instant};

    use image::{Rgb, RgbImage};

    use super::*;
    use crate::config::Settings;
    use crate::preview::PreviewFeed;
    use crate::service::Input;

    /// A worker scripted by the frame's pixel: it takes red × 10 ms, green is the frame's
    /// id, and blue 1 makes it fail, blue 2 panic.
    struct Scripted;

    fn frame(id: u8, tens_of_ms: u8, fail: u8) -> RgbImage {
        RgbImage::from_pixel(8, 8, Rgb([tens_of_ms, id, fail]))
    }

    impl FrameWorker for Scripted {
        fn recognize(&mut self, frame: &RgbImage) -> Result<FrameResult> {
            let Rgb([tens, _, fail]) = *frame.get_pixel(0, 0);
            std::thread::sleep(Duration::from_millis(10 * u64::from(tens)));
            match fail {
                0 => Ok(FrameResult::default()),
                1 => Err(anyhow!("scripted failure")),
                _ => panic!("scripted panic"),
            }
        }
    }

    fn pool(workers: usize) -> (Pool, Receiver<Input>, Arc<Metrics>) {
        let (tx, rx) = mpsc::sync_channel(64);
        let metrics = Arc::new(Metrics::new());
        let text = "[camera]\nreplay_dir = \"replay\"\n[recognition]\nclassifier = \"c.onnx\"\n\
                    [relay]\nbackend = \"sim\"\nsim_log = \"relay.log\"\n[security]\nallow_unsigned = true\n";
        let settings = Settings::from_toml(text, std::path::Path::new("/lock.toml")).unwrap();
        let delivery = Delivery::new(&settings, metrics.clone(), PreviewFeed::default(), tx);
        let workers = (0..workers)
            .map(|_| Box::new(Scripted) as Box<dyn FrameWorker>)
            .collect();
        let pool = Pool::start(workers, Arc::new(Mutex::new(delivery)), metrics.clone()).unwrap();
        (pool, rx, metrics)
    }

    fn job(image: RgbImage) -> Job {
        let now = Instant::now();
        Job {
            image,
            captured: now,
            started: now,
        }
    }

    /// What the door loop received: the frame id of each `Seen`, `E` for a failure.
    fn received(rx: &Receiver<Input>, count: usize) -> Vec<String> {
        (0..count)
            .map(
                |_| match rx.recv_timeout(Duration::from_secs(10)).expect("a result") {
                    Input::Seen(seen) => seen.image.get_pixel(0, 0)[1].to_string(),
                    Input::RecognitionFailed(message) => format!("E {message}"),
                    other => panic!("unexpected {other:?}"),
                },
            )
            .collect()
    }

    /// Waits until a worker has taken the waiting frame.
    fn until_taken(pool: &Pool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while lock(&pool.shared.slot).pending.is_some() {
            assert!(Instant::now() < deadline, "no worker took the frame");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn results_reach_the_door_in_camera_order_when_a_later_frame_finishes_first() {
        let (pool, rx, _) = pool(2);
        pool.submit(job(frame(1, 30, 0))).unwrap(); // slow
        until_taken(&pool);
        pool.submit(job(frame(2, 0, 0))).unwrap(); // fast, finishes first
        until_taken(&pool);
        pool.submit(job(frame(3, 0, 0))).unwrap();
        assert_eq!(received(&rx, 3), ["1", "2", "3"]);
    }

    #[test]
    fn a_busy_pipeline_drops_the_oldest_waiting_frame_and_keeps_the_newest() {
        let (pool, rx, metrics) = pool(1);
        pool.submit(job(frame(1, 20, 0))).unwrap();
        until_taken(&pool);
        // The one worker is busy: 2 waits, 3 replaces it, 4 replaces 3.
        for id in 2..=4 {
            pool.submit(job(frame(id, 0, 0))).unwrap();
        }
        assert_eq!(received(&rx, 2), ["1", "4"]);
        assert_eq!(metrics.frames_dropped(), 2);
        assert!(rx.recv_timeout(Duration::from_millis(100)).is_err());
    }

    #[test]
    fn a_failing_or_panicking_worker_delivers_the_failure_in_its_place() {
        let (pool, rx, _) = pool(2);
        pool.submit(job(frame(1, 0, 1))).unwrap();
        until_taken(&pool);
        pool.submit(job(frame(2, 0, 2))).unwrap();
        until_taken(&pool);
        pool.submit(job(frame(3, 0, 0))).unwrap();
        until_taken(&pool);
        pool.submit(job(frame(4, 0, 0))).unwrap();
        let got = received(&rx, 4);
        assert_eq!(
            got,
            [
                "E recognition failed: scripted failure",
                "E recognition failed: the recognition worker panicked",
                "3",
                "4"
            ]
        );
    }

    #[test]
    fn submitting_fails_once_the_door_loop_has_gone() {
        let (pool, rx, _) = pool(1);
        drop(rx);
        pool.submit(job(frame(1, 0, 0))).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while pool.submit(job(frame(2, 0, 0))).is_ok() {
            assert!(Instant::now() < deadline, "the pool never noticed");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_pool_is_idle_only_once_every_submitted_frame_is_delivered() {
        let (pool, rx, _) = pool(2);
        assert!(pool.idle());
        pool.submit(job(frame(1, 10, 0))).unwrap();
        assert!(!pool.idle(), "waiting or being recognised");
        assert_eq!(received(&rx, 1), ["1"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !pool.idle() {
            assert!(Instant::now() < deadline, "never idle after delivering");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_hung_recognition_holds_back_a_bounded_number_of_frames_and_is_reported() {
        // Frame 1 takes 500 ms; the other worker finishes frames 2.. at once, but at most
        // two per worker are taken and not delivered, so it stops after frame 4.
        let (pool, rx, _) = pool(2);
        pool.submit(job(frame(1, 50, 0))).unwrap();
        until_taken(&pool);
        for id in 2..=10 {
            pool.submit(job(frame(id, 0, 0))).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(lock(&pool.shared.slot).undelivered.len(), 4);
        assert!(pool.stalled(Duration::from_millis(40)));
        assert!(!pool.stalled(Duration::from_secs(10)));
        // Then everything is delivered in order: 1, the three held, the newest waiting.
        assert_eq!(received(&rx, 5), ["1", "2", "3", "4", "10"]);
    }

    #[test]
    fn stopping_waits_only_for_the_frames_being_recognised() {
        let (pool, _rx, _) = pool(2);
        pool.submit(job(frame(1, 10, 0))).unwrap();
        let started = Instant::now();
        drop(pool);
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
