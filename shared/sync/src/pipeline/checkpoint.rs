//! Where a run starts and what it commits: the flow's watermark (`WM#<flow>#<company>`) and a resume point,
//! saved after every committed page so an interrupted read (a run stopped before its Lambda deadline, Ctrl-C in
//! `p2c backfill`) continues from the next page instead of page 1:
//! - `WM#<flow>.resume#<company>`: the position of a full read (a first run, a backfill, an expired delta link);
//! - `WM#<flow>.next#<company>`: the position of an incremental read (from the saved delta links).
//!
//! A sweep keeps its cursor in the watermark itself (the next scheduled run continues it); a backfill of a sweep
//! keeps it in the resume item.

use crate::{
    error::SyncError,
    flow_name::FlowName,
    pipeline::{ports::Checkpoints, source::Start},
    report::RunReport,
};

/// Name of the item that remembers where an interrupted full read stopped.
pub fn resume_name(flow: FlowName) -> String {
    format!("{}.resume", flow.as_str())
}

/// Name of the item that remembers where an interrupted incremental read stopped.
pub fn next_name(flow: FlowName) -> String {
    format!("{}.next", flow.as_str())
}

pub struct Checkpoint {
    flow: FlowName,
    company: String,
    start: Start,
    /// Where positions go: `None` = the watermark itself (a sweep), else the named resume item.
    slot: Option<String>,
    /// Version of the watermark item as this run last saw or wrote it (optimistic locking).
    version: Option<u64>,
    /// Version of the resume item, once read or written.
    resume_version: Option<u64>,
}

impl Checkpoint {
    /// Reads the watermark (and the resume point of an interrupted read) and decides where the run starts.
    /// `full_resync` ignores the watermark; `position_is_watermark`: see [`SourceSpec`](super::source::SourceSpec).
    pub async fn open(
        store: &impl Checkpoints,
        flow: FlowName,
        company: &str,
        full_resync: bool,
        position_is_watermark: bool,
        report: &mut RunReport,
    ) -> Result<Checkpoint, SyncError> {
        let wm = store.get(flow.as_str(), company).await?;
        let saved = wm
            .as_ref()
            .filter(|_| !full_resync)
            .map(|w| w.value.clone())
            .filter(|v| !v.is_empty());
        let mut cp = Checkpoint {
            flow,
            company: company.to_string(),
            start: Start::Beginning,
            slot: None,
            version: wm.as_ref().map(|w| w.version),
            resume_version: None,
        };
        if position_is_watermark && !full_resync {
            cp.start = saved.map_or(Start::Beginning, Start::Saved);
            return Ok(cp);
        }
        if saved.is_none() && !position_is_watermark {
            report.full_resync = wm.is_some();
        }
        let slot = if saved.is_some() {
            next_name(flow)
        } else {
            resume_name(flow)
        };
        cp.start = match (store.get(&slot, company).await?, saved) {
            (Some(r), saved) => {
                tracing::info!(flow = %flow, company, "resuming an interrupted read");
                report.resumed = true;
                cp.resume_version = Some(r.version);
                Start::Resume {
                    position: r.value,
                    saved,
                }
            }
            (None, saved) => saved.map_or(Start::Beginning, Start::Saved),
        };
        cp.slot = Some(slot);
        Ok(cp)
    }

    pub fn start(&self) -> &Start {
        &self.start
    }

    /// Saves the position after a committed page.
    pub async fn save(&mut self, store: &impl Checkpoints, position: &str) -> Result<(), SyncError> {
        let (name, expected) = match &self.slot {
            None => (self.flow.as_str().to_string(), self.version),
            Some(n) => (n.clone(), self.resume_version),
        };
        let w = store.put(&name, &self.company, position, expected).await?;
        match self.slot {
            None => self.version = Some(w.version),
            Some(_) => self.resume_version = Some(w.version),
        }
        Ok(())
    }

    /// Every page is committed: the watermark moves, and the resume point (if any) goes. A full read also
    /// drops the position of an interrupted incremental read: it belonged to the watermark it replaces.
    pub async fn finish(self, store: &impl Checkpoints, watermark: &str) -> Result<(), SyncError> {
        store
            .put(self.flow.as_str(), &self.company, watermark, self.version)
            .await?;
        if let (Some(name), Some(_)) = (&self.slot, self.resume_version) {
            store.delete(name, &self.company).await?;
        }
        if self.slot.as_deref() == Some(resume_name(self.flow).as_str()) {
            store.delete(&next_name(self.flow), &self.company).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::ports::MemoryCheckpoints;

    const F: FlowName = FlowName::ContactsToFno;

    async fn open(store: &MemoryCheckpoints, full: bool, sweep: bool) -> (Checkpoint, RunReport) {
        let mut r = RunReport::default();
        let cp = Checkpoint::open(store, F, "usmf", full, sweep, &mut r).await.unwrap();
        (cp, r)
    }

    #[tokio::test]
    async fn an_interrupted_full_read_resumes_from_its_last_page_then_clears_the_resume_point() {
        let store = MemoryCheckpoints::default();
        let (mut cp, _) = open(&store, true, false).await;
        assert_eq!(cp.start(), &Start::Beginning);
        cp.save(&store, "page-2").await.unwrap();
        cp.save(&store, "page-3").await.unwrap();
        drop(cp); // interrupted

        let (cp, r) = open(&store, true, false).await;
        assert_eq!(
            cp.start(),
            &Start::Resume {
                position: "page-3".into(),
                saved: None
            }
        );
        assert!(r.resumed);
        cp.finish(&store, "delta-1").await.unwrap();
        assert_eq!(store.value("contacts-to-fno", "usmf").as_deref(), Some("delta-1"));
        assert_eq!(store.value("contacts-to-fno.resume", "usmf"), None);

        let (cp, r) = open(&store, false, false).await;
        assert_eq!(
            (cp.start(), r.resumed, r.full_resync),
            (&Start::Saved("delta-1".into()), false, false)
        );
    }

    #[tokio::test]
    async fn an_interrupted_incremental_read_resumes_from_its_own_position_and_a_backfill_ignores_it() {
        let store = MemoryCheckpoints::default();
        Checkpoint::open(&store, F, "usmf", false, false, &mut RunReport::default())
            .await
            .unwrap()
            .finish(&store, "delta-1")
            .await
            .unwrap();
        let (mut cp, _) = open(&store, false, false).await;
        assert_eq!(cp.start(), &Start::Saved("delta-1".into()));
        cp.save(&store, "delta-1-page-2").await.unwrap();
        assert_eq!(
            store.value("contacts-to-fno.next", "usmf").as_deref(),
            Some("delta-1-page-2")
        );
        assert_eq!(store.value("contacts-to-fno.resume", "usmf"), None);
        drop(cp); // stopped before the deadline

        // A backfill starts from the beginning, and its end drops the stale incremental position.
        let (cp, r) = open(&store, true, false).await;
        assert_eq!((cp.start(), r.resumed), (&Start::Beginning, false));
        let (cp2, r) = open(&store, false, false).await;
        let resumed = Start::Resume {
            position: "delta-1-page-2".into(),
            saved: Some("delta-1".into()),
        };
        assert_eq!((cp2.start(), r.resumed), (&resumed, true));
        cp.finish(&store, "delta-2").await.unwrap();
        assert_eq!(store.value("contacts-to-fno.next", "usmf"), None);
    }

    #[tokio::test]
    async fn a_sweep_keeps_its_cursor_in_the_watermark_and_a_backfill_of_it_in_the_resume_point() {
        let store = MemoryCheckpoints::default();
        let (mut cp, _) = open(&store, false, true).await;
        assert_eq!(cp.start(), &Start::Beginning);
        cp.save(&store, r#"{"after":"D2"}"#).await.unwrap();
        assert_eq!(
            store.value("contacts-to-fno", "usmf").as_deref(),
            Some(r#"{"after":"D2"}"#)
        );
        let (cp, _) = open(&store, false, true).await;
        assert_eq!(cp.start(), &Start::Saved(r#"{"after":"D2"}"#.into()));

        let (mut cp, _) = open(&store, true, true).await;
        assert_eq!(
            cp.start(),
            &Start::Beginning,
            "a backfill ignores the scheduled sweep's cursor"
        );
        cp.save(&store, r#"{"after":"D4"}"#).await.unwrap();
        let (cp, r) = open(&store, true, true).await;
        let resumed = Start::Resume {
            position: r#"{"after":"D4"}"#.into(),
            saved: None,
        };
        assert_eq!((cp.start(), r.resumed), (&resumed, true));
    }

    #[tokio::test]
    async fn a_watermark_moved_by_another_run_is_a_conflict() {
        let store = MemoryCheckpoints::default();
        let (cp, _) = open(&store, false, false).await;
        store.put("contacts-to-fno", "usmf", "other", None).await.unwrap();
        assert!(cp.finish(&store, "mine").await.is_err());
    }
}
