//! Where a run starts and what it commits: the flow's watermark (`WM#<flow>#<company>`) and, for a full read,
//! its resume point (`WM#<flow>.resume#<company>`), saved after every committed page so an interrupted read
//! (a Lambda timeout, Ctrl-C in `p2c backfill`) continues from the next page instead of page 1.

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

/// Where positions go while a run reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// The watermark itself (a sweep continued by the next scheduled run).
    Watermark,
    /// The resume item, while a full read is under way.
    Resume,
    /// Nowhere: an incremental read from a delta link restarts from that link.
    None,
}

pub struct Checkpoint {
    flow: FlowName,
    company: String,
    start: Start,
    slot: Slot,
    /// Version of the watermark item as this run last saw or wrote it (optimistic locking).
    version: Option<u64>,
    /// Version of the resume item, when there is one.
    resume_version: Option<u64>,
}

impl Checkpoint {
    /// Reads the watermark (and the resume point of a full read) and decides where the run starts.
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
            slot: Slot::Resume,
            version: wm.as_ref().map(|w| w.version),
            resume_version: None,
        };
        if position_is_watermark && !full_resync {
            cp.slot = Slot::Watermark;
            cp.start = saved.map_or(Start::Beginning, Start::Saved);
            return Ok(cp);
        }
        if let Some(v) = saved {
            cp.start = Start::Saved(v);
            cp.slot = Slot::None;
            return Ok(cp);
        }
        if !position_is_watermark {
            report.full_resync = wm.is_some();
        }
        if let Some(r) = store.get(&resume_name(flow), company).await? {
            tracing::info!(flow = %flow, company, "resuming an interrupted full read");
            report.resumed = true;
            cp.resume_version = Some(r.version);
            cp.start = Start::Resume(r.value);
        }
        Ok(cp)
    }

    pub fn start(&self) -> &Start {
        &self.start
    }

    /// Saves the position after a committed page. A delta link refused mid-run turns an incremental read into
    /// a full one (`report.full_resync`): from then on its positions are saved too.
    pub async fn save(
        &mut self,
        store: &impl Checkpoints,
        position: &str,
        report: &RunReport,
    ) -> Result<(), SyncError> {
        let slot = match self.slot {
            Slot::None if report.full_resync => Slot::Resume,
            s => s,
        };
        match slot {
            Slot::Watermark => {
                let w = store
                    .put(self.flow.as_str(), &self.company, position, self.version)
                    .await?;
                self.version = Some(w.version);
            }
            Slot::Resume => {
                let name = resume_name(self.flow);
                let w = store.put(&name, &self.company, position, self.resume_version).await?;
                self.resume_version = Some(w.version);
            }
            Slot::None => {}
        }
        Ok(())
    }

    /// Every page is committed: the watermark moves, and the resume point (if any) goes.
    pub async fn finish(self, store: &impl Checkpoints, watermark: &str) -> Result<(), SyncError> {
        store
            .put(self.flow.as_str(), &self.company, watermark, self.version)
            .await?;
        if self.resume_version.is_some() {
            store.delete(&resume_name(self.flow), &self.company).await?;
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
        cp.save(&store, "page-2", &RunReport::default()).await.unwrap();
        cp.save(&store, "page-3", &RunReport::default()).await.unwrap();
        drop(cp); // interrupted

        let (cp, r) = open(&store, true, false).await;
        assert_eq!(cp.start(), &Start::Resume("page-3".into()));
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
    async fn an_incremental_read_saves_no_positions_unless_its_delta_link_was_refused() {
        let store = MemoryCheckpoints::default();
        Checkpoint::open(&store, F, "usmf", false, false, &mut RunReport::default())
            .await
            .unwrap()
            .finish(&store, "delta-1")
            .await
            .unwrap();
        let (mut cp, _) = open(&store, false, false).await;
        cp.save(&store, "next", &RunReport::default()).await.unwrap();
        assert_eq!(store.value("contacts-to-fno.resume", "usmf"), None);
        let fell_back = RunReport {
            full_resync: true,
            ..Default::default()
        };
        cp.save(&store, "next", &fell_back).await.unwrap();
        assert_eq!(store.value("contacts-to-fno.resume", "usmf").as_deref(), Some("next"));
    }

    #[tokio::test]
    async fn a_sweep_keeps_its_cursor_in_the_watermark_and_a_backfill_of_it_in_the_resume_point() {
        let store = MemoryCheckpoints::default();
        let (mut cp, _) = open(&store, false, true).await;
        assert_eq!(cp.start(), &Start::Beginning);
        cp.save(&store, r#"{"after":"D2"}"#, &RunReport::default())
            .await
            .unwrap();
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
        cp.save(&store, r#"{"after":"D4"}"#, &RunReport::default())
            .await
            .unwrap();
        let (cp, r) = open(&store, true, true).await;
        assert_eq!(
            (cp.start(), r.resumed),
            (&Start::Resume(r#"{"after":"D4"}"#.into()), true)
        );
    }

    #[tokio::test]
    async fn a_watermark_moved_by_another_run_is_a_conflict() {
        let store = MemoryCheckpoints::default();
        let (cp, _) = open(&store, false, false).await;
        store.put("contacts-to-fno", "usmf", "other", None).await.unwrap();
        assert!(cp.finish(&store, "mine").await.is_err());
    }
}
