//! Crash points for the fault suite: a test arms one and the pipeline stops there as if the process had died
//! (nothing after that point runs: no link commit, no watermark, no lease release). Never armed in production:
//! only code holding `Deps` can arm it, and no configuration does.

use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum CrashPoint {
    /// After the target writes of a page, before their links are committed.
    AfterTargetWrite,
    /// After the links of the last page, before the watermark moves.
    BeforeWatermark,
    /// A bug: a panic where `AfterTargetWrite` would crash (the process survives; the run or batch must not).
    PanicAfterTargetWrite,
}

#[derive(Default)]
pub struct Crashes {
    armed: Mutex<Option<(CrashPoint, u32)>>,
}

impl Crashes {
    /// Crash the `nth` time (1 = the first) the pipeline reaches `point`.
    pub fn arm(&self, point: CrashPoint, nth: u32) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = Some((point, nth.max(1)));
    }

    pub fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Called by the pipeline at each crash point; `Err` is the simulated death (a `SyncError` through `?`).
    pub fn check(&self, point: CrashPoint) -> Result<(), CrashPoint> {
        let mut armed = self.armed.lock().unwrap_or_else(|p| p.into_inner());
        if point == CrashPoint::AfterTargetWrite && matches!(*armed, Some((CrashPoint::PanicAfterTargetWrite, _))) {
            *armed = None;
            drop(armed);
            panic!("injected panic after the target write");
        }
        match *armed {
            Some((p, 1)) if p == point => {
                *armed = None;
                Err(point)
            }
            Some((p, n)) if p == point => {
                *armed = Some((p, n - 1));
                Ok(())
            }
            _ => Ok(()),
        }
    }
}
