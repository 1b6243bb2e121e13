//! The progress port: what a long operation tells whoever watches it (key generation on a
//! token or card, RSA >= 4096 in software, a bulk import). The manager only reports; the CLI
//! draws (`cli/progress.rs`: indicatif on a terminal), and `serve` and tests watch nothing or
//! record. Nothing here knows a terminal.

/// An observer of long work. One task at a time is started and finished; `advance` counts
/// steps of a task with a known total.
pub trait ProgressSink: Send + Sync {
    /// A task begins: `what` says what runs ("generating RSA-8192 key on token 'ca'"),
    /// `total` how many steps it has, when known (`None`: a spinner with elapsed time).
    fn start(&self, what: &str, total: Option<u64>);
    /// `n` more steps of the current task are done.
    fn advance(&self, n: u64);
    /// The current task ended (done or failed).
    fn finish(&self);
}

/// Watches nothing: the default of every manager.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn start(&self, _: &str, _: Option<u64>) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A started task: finishes it when dropped, so that an error (`?`) ends the bar too.
#[must_use = "the task finishes when this is dropped"]
pub struct Task<'a> {
    sink: &'a dyn ProgressSink,
}

impl<'a> Task<'a> {
    /// Starts `what` on `sink`.
    pub fn start(sink: &'a dyn ProgressSink, what: &str, total: Option<u64>) -> Self {
        sink.start(what, total);
        Task { sink }
    }

    /// `n` more steps done.
    pub fn advance(&self, n: u64) {
        self.sink.advance(n);
    }
}

impl Drop for Task<'_> {
    fn drop(&mut self) {
        self.sink.finish();
    }
}

/// Records what it is told, for tests of the manager's reporting.
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Recorder(pub(crate) std::sync::Mutex<Vec<String>>);

#[cfg(test)]
impl Recorder {
    pub(crate) fn events(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

#[cfg(test)]
impl ProgressSink for Recorder {
    fn start(&self, what: &str, total: Option<u64>) {
        let total = total.map(|t| format!(" /{t}")).unwrap_or_default();
        self.0.lock().unwrap().push(format!("start {what}{total}"));
    }
    fn advance(&self, n: u64) {
        self.0.lock().unwrap().push(format!("advance {n}"));
    }
    fn finish(&self) {
        self.0.lock().unwrap().push("finish".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_finishes_when_dropped_even_on_an_early_return() {
        let r = Recorder::default();
        let run = |fail: bool| -> Result<(), ()> {
            let t = Task::start(&r, "work", Some(3));
            t.advance(1);
            if fail {
                return Err(());
            }
            t.advance(2);
            Ok(())
        };
        assert!(run(true).is_err());
        assert_eq!(r.events(), ["start work /3", "advance 1", "finish"]);
        r.0.lock().unwrap().clear();
        run(false).unwrap();
        assert_eq!(
            r.events(),
            ["start work /3", "advance 1", "advance 2", "finish"]
        );
    }
}
