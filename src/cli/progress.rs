//! Progress on stderr, drawn by indicatif: a spinner with elapsed time for work of unknown
//! length (key generation on a token or card, big RSA in software), a bar for counted work
//! (bulk import, script lines). Only when stderr is a terminal and neither `--quiet` nor
//! `--json` was given: piped or scripted runs get no escape sequences, ever.
//!
//! The manager reports through its port ([`crate::manager::progress::ProgressSink`]);
//! [`Progress::sink`] is that port drawn here. Commands that count their own work (a script's
//! lines) take a [`Bar`]:
//!
//! ```no_run
//! # fn run(ctx: &certman::cli::Ctx, lines: &[String]) {
//! let bar = ctx.progress().lines(lines.len() as u64);
//! for line in lines {
//!     bar.set_message(line);
//!     // … run the line …
//!     bar.inc(1);
//! }
//! bar.finish();
//! # }
//! ```

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::manager::progress::{NoProgress, ProgressSink};

/// The bar or spinner on the terminal now (one at a time), and its number: a prompt
/// (a PIN asked in the middle of a key generation) hides it while it waits.
static SHOWN: Mutex<Option<(u64, ProgressBar)>> = Mutex::new(None);
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Runs a prompt with the shown bar hidden (see [`crate::secret::set_prompt_around`]).
fn around_prompt(prompt: &mut dyn FnMut()) {
    let shown = SHOWN
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|(_, pb)| pb.clone()));
    match shown {
        Some(pb) => pb.suspend(prompt),
        None => prompt(),
    }
}

/// How often a spinner turns while the work itself gives no news (a token's keygen).
const TICK: Duration = Duration::from_millis(100);

/// Whether (and where) this process draws progress.
#[derive(Clone)]
pub struct Progress {
    /// `None`: draw nothing
    target: Option<Target>,
}

#[derive(Clone)]
enum Target {
    Stderr,
    /// tests: a terminal that keeps what is drawn on it
    #[cfg(test)]
    Capture(Arc<Mutex<Vec<String>>>),
}

impl Progress {
    /// Progress for a command run with these global options: drawn on stderr only when it
    /// is a terminal and neither `--quiet` nor `--json` was given.
    pub fn new(quiet: bool, json: bool) -> Self {
        Self::decide(quiet, json, std::io::stderr().is_terminal())
    }

    /// The decision of [`Progress::new`], with the terminal test given.
    fn decide(quiet: bool, json: bool, stderr_is_terminal: bool) -> Self {
        Progress {
            target: (stderr_is_terminal && !quiet && !json).then_some(Target::Stderr),
        }
    }

    /// Draws nothing.
    pub fn hidden() -> Self {
        Progress { target: None }
    }

    /// Whether anything is drawn.
    pub fn is_drawn(&self) -> bool {
        self.target.is_some()
    }

    fn draw_target(&self) -> Option<ProgressDrawTarget> {
        match self.target.as_ref()? {
            Target::Stderr => Some(ProgressDrawTarget::stderr()),
            #[cfg(test)]
            Target::Capture(lines) => Some(ProgressDrawTarget::term_like(Box::new(
                tests::CaptureTerm(lines.clone()),
            ))),
        }
    }

    /// A bar for `total` lines (or other counted steps) of a run: `inc(1)` per line,
    /// `finish()` at the end (or drop it). Draws nothing when progress is not drawn.
    pub fn lines(&self, total: u64) -> Bar {
        Bar::shown(self.bar(total))
    }

    /// A spinner with elapsed time for `what`, until `finish()` (or drop).
    pub fn spinner(&self, what: &str) -> Bar {
        Bar::shown(self.spin(what))
    }

    fn bar(&self, total: u64) -> Option<ProgressBar> {
        let pb = ProgressBar::with_draw_target(Some(total), self.draw_target()?);
        pb.set_style(
            ProgressStyle::with_template("{msg:.dim} [{bar:30}] {pos}/{len} {secs}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .with_key("secs", secs)
                .progress_chars("=> "),
        );
        pb.enable_steady_tick(TICK * 5);
        Some(pb)
    }

    fn spin(&self, what: &str) -> Option<ProgressBar> {
        let pb = ProgressBar::with_draw_target(None, self.draw_target()?);
        pb.set_style(
            ProgressStyle::with_template("{spinner} {msg}… {secs}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner())
                .with_key("secs", secs),
        );
        pb.set_message(what.to_owned());
        // the work blocks in a token or in AWS-LC: only a ticker thread can turn the spinner
        pb.enable_steady_tick(TICK);
        Some(pb)
    }

    /// The manager's progress port, drawn here (a no-op when nothing is drawn).
    pub fn sink(&self) -> Arc<dyn ProgressSink> {
        if self.is_drawn() {
            Arc::new(TerminalSink {
                progress: self.clone(),
                current: Mutex::new(None),
            })
        } else {
            Arc::new(NoProgress)
        }
    }
}

/// Elapsed time with a tenth of a second: "4.1 s".
fn secs(state: &ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.1} s", state.elapsed().as_secs_f64());
}

/// A bar or spinner; does nothing when progress is not drawn. Cleared from the terminal
/// when finished or dropped, so that what the command prints afterwards stands alone.
pub struct Bar(Option<ProgressBar>, u64);

impl Bar {
    fn shown(pb: Option<ProgressBar>) -> Bar {
        let Some(pb) = pb else {
            return Bar(None, 0);
        };
        crate::secret::set_prompt_around(around_prompt);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut shown) = SHOWN.lock() {
            *shown = Some((id, pb.clone()));
        }
        Bar(Some(pb), id)
    }

    /// `n` more steps done.
    pub fn inc(&self, n: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(n);
        }
    }

    /// What runs now (a script line, a file name), shown beside the bar.
    pub fn set_message(&self, message: &str) {
        if let Some(pb) = &self.0 {
            pb.set_message(crate::cli::output::esc(message));
        }
    }

    /// Prints `line` above the bar (a script's own output) without tearing it.
    pub fn println(&self, line: &str) {
        match &self.0 {
            Some(pb) => pb.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// The work is over: the bar goes.
    pub fn finish(self) {}
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(pb) = self.0.take() {
            if let Ok(mut shown) = SHOWN.lock() {
                if shown.as_ref().is_some_and(|(id, _)| *id == self.1) {
                    *shown = None;
                }
            }
            pb.finish_and_clear();
        }
    }
}

/// The manager's port on a terminal: one bar or spinner at a time.
struct TerminalSink {
    progress: Progress,
    current: Mutex<Option<Bar>>,
}

impl ProgressSink for TerminalSink {
    fn start(&self, what: &str, total: Option<u64>) {
        let bar = match total {
            Some(n) => {
                let b = self.progress.lines(n);
                b.set_message(what);
                b
            }
            None => self.progress.spinner(what),
        };
        if let Ok(mut current) = self.current.lock() {
            *current = Some(bar);
        }
    }

    fn advance(&self, n: u64) {
        if let Ok(current) = self.current.lock() {
            if let Some(b) = current.as_ref() {
                b.inc(n);
            }
        }
    }

    fn finish(&self) {
        if let Ok(mut current) = self.current.lock() {
            current.take();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A terminal that records every line written to it.
    #[derive(Debug)]
    pub(super) struct CaptureTerm(pub(super) Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for CaptureTerm {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.is_empty() {
                self.0.lock().unwrap().push(s.to_owned());
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn captured() -> (Progress, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (
            Progress {
                target: Some(Target::Capture(lines.clone())),
            },
            lines,
        )
    }

    #[test]
    fn drawn_only_on_a_terminal_without_quiet_or_json() {
        assert!(Progress::decide(false, false, true).is_drawn());
        assert!(!Progress::decide(false, false, false).is_drawn());
        assert!(!Progress::decide(true, false, true).is_drawn());
        assert!(!Progress::decide(false, true, true).is_drawn());
        assert!(!Progress::hidden().is_drawn());
    }

    #[test]
    fn nothing_is_drawn_when_not_a_terminal() {
        // stderr not a terminal: no bar exists, so nothing can be written anywhere
        let p = Progress::decide(false, false, false);
        let bar = p.lines(10);
        assert!(bar.0.is_none());
        bar.inc(5);
        bar.finish();
        assert!(p.spinner("generating").0.is_none());
        let sink = p.sink();
        sink.start("generating RSA-8192 key on token 'x'", None);
        sink.finish();
    }

    #[test]
    fn a_drawn_bar_counts_lines_and_a_spinner_shows_what_and_elapsed_time() {
        let (p, lines) = captured();
        let bar = p.lines(3);
        bar.set_message("script");
        bar.inc(2);
        std::thread::sleep(TICK * 6);
        let drawn = lines.lock().unwrap().join("\n");
        assert!(drawn.contains("2/3"), "{drawn}");
        assert!(drawn.contains("script"), "{drawn}");
        bar.finish();

        lines.lock().unwrap().clear();
        let sink = p.sink();
        sink.start("generating RSA-8192 key on token 'x'", None);
        std::thread::sleep(TICK * 3);
        sink.finish();
        let drawn = lines.lock().unwrap().join("\n");
        assert!(
            drawn.contains("generating RSA-8192 key on token 'x'… 0."),
            "{drawn}"
        );
        assert!(drawn.contains(" s"), "{drawn}");
    }
}
