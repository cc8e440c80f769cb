//! Time and randomness for retries, backoff and heartbeats, behind small seams so that the
//! logic that uses them is tested fast and deterministically.
//!
//! [`Pacer::system`] is the real thing. Tests use [`FakeClock`] (virtual time: sleeps either
//! complete at once and advance the clock, or wait until the test advances it) and
//! [`FixedJitter`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{oneshot, Notify};

/// A future returned by [`Clock::sleep`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Monotonic time and sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> Instant;
    fn sleep(&self, duration: Duration) -> Sleep;
}

/// Uniform random numbers for jitter.
pub trait Jitter: Send + Sync + fmt::Debug {
    /// A number in `[low, high]`.
    fn uniform(&self, low: f64, high: f64) -> f64;
}

/// The clock and the randomness a retry loop uses.
#[derive(Debug, Clone)]
pub struct Pacer {
    pub clock: Arc<dyn Clock>,
    pub jitter: Arc<dyn Jitter>,
}

impl Pacer {
    /// Real time (tokio timers) and a thread-local random generator.
    pub fn system() -> Self {
        Pacer {
            clock: Arc::new(SystemClock),
            jitter: Arc::new(RandomJitter),
        }
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    pub fn sleep(&self, duration: Duration) -> Sleep {
        self.clock.sleep(duration)
    }

    /// `base × U(low, high)`.
    pub fn scaled(&self, base: Duration, low: f64, high: f64) -> Duration {
        base.mul_f64(self.jitter.uniform(low, high).max(0.0))
    }
}

/// Real time, sleeping on tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// Uniform numbers from `rand`'s thread-local generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomJitter;

impl Jitter for RandomJitter {
    fn uniform(&self, low: f64, high: f64) -> f64 {
        if high > low {
            rand::thread_rng().gen_range(low..=high)
        } else {
            low
        }
    }
}

/// Jitter that always picks the same point of the range: `low + fraction × (high - low)`.
#[derive(Debug, Clone, Copy)]
pub struct FixedJitter(pub f64);

impl Jitter for FixedJitter {
    fn uniform(&self, low: f64, high: f64) -> f64 {
        low + self.0 * (high - low)
    }
}

/// Virtual time for tests.
///
/// In *auto* mode every sleep completes at once and moves the clock forward by its duration,
/// so a retry loop runs through minutes of backoff instantly. In *manual* mode a sleep waits
/// until [`FakeClock::advance`] moves the clock past its deadline. Both record every
/// requested sleep.
#[derive(Debug)]
pub struct FakeClock {
    base: Instant,
    auto_advance: bool,
    state: Mutex<FakeState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct FakeState {
    elapsed: Duration,
    slept: Vec<Duration>,
    sleepers: Vec<Sleeper>,
}

#[derive(Debug)]
struct Sleeper {
    until: Duration,
    wake: oneshot::Sender<()>,
}

impl FakeClock {
    /// Sleeps return at once and advance the clock.
    pub fn auto() -> Arc<Self> {
        Arc::new(Self::with_mode(true))
    }

    /// Sleeps wait for [`FakeClock::advance`].
    pub fn manual() -> Arc<Self> {
        Arc::new(Self::with_mode(false))
    }

    fn with_mode(auto_advance: bool) -> Self {
        FakeClock {
            base: Instant::now(),
            auto_advance,
            state: Mutex::new(FakeState::default()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        match self.state.lock() {
            Ok(state) => state,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Virtual time since the clock was made.
    pub fn elapsed(&self) -> Duration {
        self.lock().elapsed
    }

    /// Every sleep requested so far, in order.
    pub fn slept(&self) -> Vec<Duration> {
        self.lock().slept.clone()
    }

    /// Moves the clock forward and wakes the sleepers whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let mut state = self.lock();
        state.elapsed += by;
        let now = state.elapsed;
        let sleepers = std::mem::take(&mut state.sleepers);
        for sleeper in sleepers {
            if sleeper.until <= now {
                let _ = sleeper.wake.send(());
            } else if !sleeper.wake.is_closed() {
                state.sleepers.push(sleeper);
            }
        }
    }

    /// Waits until `count` sleeps have been requested in all, and returns the duration of
    /// the `count`-th (1-based; 0 returns zero at once).
    pub async fn nth_sleep(&self, count: usize) -> Duration {
        let Some(index) = count.checked_sub(1) else {
            return Duration::ZERO;
        };
        loop {
            let changed = self.changed.notified();
            if let Some(duration) = self.lock().slept.get(index) {
                return *duration;
            }
            changed.await;
        }
    }

    /// Waits until something sleeps on this clock (a manual clock), and returns how long the
    /// shortest current sleep still has to go.
    pub async fn sleeping(&self) -> Duration {
        loop {
            let changed = self.changed.notified();
            {
                let state = self.lock();
                let remaining = state
                    .sleepers
                    .iter()
                    .filter(|sleeper| !sleeper.wake.is_closed())
                    .map(|sleeper| sleeper.until.saturating_sub(state.elapsed))
                    .min();
                if let Some(remaining) = remaining {
                    return remaining;
                }
            }
            changed.await;
        }
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Instant {
        self.base + self.lock().elapsed
    }

    fn sleep(&self, duration: Duration) -> Sleep {
        let mut state = self.lock();
        state.slept.push(duration);
        if self.auto_advance || duration.is_zero() {
            state.elapsed += duration;
            drop(state);
            self.changed.notify_waiters();
            return Box::pin(async {});
        }
        let (wake, woken) = oneshot::channel();
        let until = state.elapsed + duration;
        state.sleepers.retain(|sleeper| !sleeper.wake.is_closed());
        state.sleepers.push(Sleeper { until, wake });
        drop(state);
        self.changed.notify_waiters();
        Box::pin(async move {
            let _ = woken.await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn auto_clock_advances_on_sleep() {
        let clock = FakeClock::auto();
        let start = clock.now();
        clock.sleep(Duration::from_secs(3)).await;
        clock.sleep(Duration::from_secs(4)).await;
        assert_eq!(clock.now() - start, Duration::from_secs(7));
        assert_eq!(
            clock.slept(),
            vec![Duration::from_secs(3), Duration::from_secs(4)]
        );
    }

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let clock = FakeClock::manual();
        let sleeper = {
            let clock = clock.clone();
            tokio::spawn(async move { clock.sleep(Duration::from_secs(10)).await })
        };
        assert_eq!(clock.nth_sleep(1).await, Duration::from_secs(10));
        assert_eq!(clock.sleeping().await, Duration::from_secs(10));
        clock.advance(Duration::from_secs(4));
        assert_eq!(clock.sleeping().await, Duration::from_secs(6));
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(6));
        sleeper.await.expect("the sleeper finishes");
        assert_eq!(clock.elapsed(), Duration::from_secs(10));
    }

    #[test]
    fn fixed_jitter_picks_a_point_of_the_range() {
        assert_eq!(FixedJitter(0.0).uniform(0.3, 0.6), 0.3);
        assert_eq!(FixedJitter(1.0).uniform(1.0, 2.0), 2.0);
        let pacer = Pacer {
            clock: FakeClock::auto(),
            jitter: Arc::new(FixedJitter(0.5)),
        };
        assert_eq!(
            pacer.scaled(Duration::from_secs(100), 0.3, 0.5),
            Duration::from_secs(40)
        );
    }

    #[test]
    fn random_jitter_stays_in_range() {
        for _ in 0..1000 {
            let value = RandomJitter.uniform(0.3, 0.6);
            assert!((0.3..=0.6).contains(&value), "{value}");
        }
        assert_eq!(RandomJitter.uniform(2.0, 2.0), 2.0);
    }
}
