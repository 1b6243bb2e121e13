//! RouterOS item numbers: the `#` that `print` shows, usable wherever a NAME is (`remove 0`,
//! `issued-revoke 3`, `scep-server set 1 …`).
//!
//! As in RouterOS, the numbers are those of the **last `print` of that menu in this session**:
//! they keep pointing at the items that print showed, whatever was added or removed since. A
//! session is the terminal session (`getsid`, so every command typed in one shell shares it)
//! or one `certman script` run. Without a print in the session, a number is the item's
//! position in a full `print` now. The numbers are kept per store, session and menu in a 0600
//! file under `$XDG_RUNTIME_DIR/certman` (else a 0700 `certman-UID` directory in the temporary
//! directory); losing them only means falling back to positions.
//!
//! A word made only of digits (or digits joined by commas: `remove 0,2`) is a number, never a
//! name.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::agent::wire;
use crate::error::ManagerError;

/// A menu with its own numbering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Menu {
    /// `/certificate print`
    Certificates,
    /// `/certificate scep-server print`
    ScepServers,
}

impl Menu {
    fn word(self) -> &'static str {
        match self {
            Menu::Certificates => "certificates",
            Menu::ScepServers => "scep-servers",
        }
    }
}

/// How long a session's numbers file is kept after its last print.
const KEEP: Duration = Duration::from_secs(24 * 3600);

/// Where a session's numbers live.
pub enum Numbers {
    /// a terminal session's: files named after the session and the store
    Session(std::cell::OnceCell<SessionFiles>, PathBuf, i32),
    /// a script run's: in memory
    Script(RefCell<HashMap<Menu, Vec<String>>>),
}

/// A terminal session's numbers files.
pub struct SessionFiles {
    /// the private directory, if one could be made
    dir: Option<PathBuf>,
    /// session id and store, in the file names
    key: String,
}

impl SessionFiles {
    fn of(store: &Path, sid: i32) -> SessionFiles {
        // numbered per store however it is spelt (`./s`, `/abs/s`)
        let store = std::fs::canonicalize(store).unwrap_or_else(|_| store.to_owned());
        SessionFiles {
            dir: wire::private_dir(),
            key: format!(
                "{sid}-{:016x}",
                wire::fnv1a(store.as_os_str().as_encoded_bytes())
            ),
        }
    }
}

impl Numbers {
    /// The terminal session's numbers for the store at `store`; nothing is looked up until
    /// a print or a number needs it.
    /// `sid`: the terminal session (`getsid`) of the process the command line was typed to:
    /// this one's, or an agent's client's.
    pub fn session(store: PathBuf, sid: i32) -> Self {
        Numbers::Session(std::cell::OnceCell::new(), store, sid)
    }

    fn files(&self) -> Option<&SessionFiles> {
        match self {
            Numbers::Session(files, store, sid) => {
                Some(files.get_or_init(|| SessionFiles::of(store, *sid)))
            }
            Numbers::Script(_) => None,
        }
    }

    /// A script run's own numbers, starting with none.
    pub fn script() -> Self {
        Numbers::Script(RefCell::new(HashMap::new()))
    }

    /// Remembers what a print of `menu` showed, in order. Best effort: if the numbers can't
    /// be kept, later numbers are positions.
    pub fn record(&self, menu: Menu, names: &[String]) {
        match self {
            Numbers::Script(m) => {
                m.borrow_mut().insert(menu, names.to_vec());
            }
            Numbers::Session(..) => {
                if let Some(SessionFiles { dir: Some(d), key }) = self.files() {
                    forget_old(d);
                    let _ = write_unsynced(&d.join(file_name(key, menu)), names);
                }
            }
        }
    }

    fn recorded(&self, menu: Menu) -> Option<Vec<String>> {
        match self {
            Numbers::Script(m) => m.borrow().get(&menu).cloned(),
            Numbers::Session(..) => {
                let SessionFiles { dir: Some(d), key } = self.files()? else {
                    return None;
                };
                let bytes = std::fs::read(d.join(file_name(key, menu))).ok()?;
                serde_json::from_slice(&bytes).ok()
            }
        }
    }

    /// `words` with every number replaced by the name it stands for. `current` lists the
    /// menu's items in print order, for when the session has no print of it.
    pub fn resolve(
        &self,
        menu: Menu,
        words: &[String],
        current: impl FnOnce() -> Result<Vec<String>, ManagerError>,
    ) -> Result<Vec<String>, ManagerError> {
        if !words.iter().any(|w| is_number_list(w)) {
            return Ok(words.to_vec());
        }
        let (shown, from_print) = match self.recorded(menu) {
            Some(v) => (v, true),
            None => (current()?, false),
        };
        let mut out = Vec::with_capacity(words.len());
        for w in words {
            if !is_number_list(w) {
                out.push(w.clone());
                continue;
            }
            for n in w.split(',') {
                let name = n
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| shown.get(i))
                    .ok_or_else(|| {
                        let what = if from_print {
                            "the last print in this session"
                        } else {
                            "print (none in this session yet)"
                        };
                        ManagerError::InvalidValue(format!(
                            "no item #{n}: {what} shows {} item{}",
                            shown.len(),
                            if shown.len() == 1 { "" } else { "s" }
                        ))
                    })?;
                out.push(name.clone());
            }
        }
        Ok(out)
    }

    /// One word resolved (a command taking a single NAME).
    pub fn resolve_one(
        &self,
        menu: Menu,
        word: &str,
        current: impl FnOnce() -> Result<Vec<String>, ManagerError>,
    ) -> Result<String, ManagerError> {
        if word.contains(',') && is_number_list(word) {
            return Err(ManagerError::InvalidValue(format!(
                "'{word}': this command takes one item"
            )));
        }
        let mut v = self.resolve(menu, &[word.to_owned()], current)?;
        Ok(v.pop().unwrap_or_default())
    }
}

/// `0`, `12`, `0,3,4`.
pub fn is_number_list(w: &str) -> bool {
    !w.is_empty()
        && w.split(',')
            .all(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Writes the numbers whole (a temporary file renamed over), 0600, without an fsync: they
/// are a convenience that a crash may lose, not data.
fn write_unsynced(path: &Path, names: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let body = serde_json::to_vec(names).map_err(std::io::Error::other)?;
    let written = f.write_all(&body).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn file_name(key: &str, menu: Menu) -> String {
    format!("numbers-{key}-{}.json", menu.word())
}

/// Drops other sessions' numbers not used for a day.
fn forget_old(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > KEEP);
        if old && e.file_name().to_string_lossy().starts_with("numbers-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn numbers_are_those_of_the_last_print() {
        let n = Numbers::script();
        let now = || Ok(names(&["a", "b", "c"]));
        // no print yet: positions now
        assert_eq!(
            n.resolve(Menu::Certificates, &names(&["1", "x"]), now)
                .unwrap(),
            names(&["b", "x"])
        );
        n.record(Menu::Certificates, &names(&["c", "a"]));
        assert_eq!(
            n.resolve(Menu::Certificates, &names(&["0,1"]), now)
                .unwrap(),
            names(&["c", "a"])
        );
        let e = n
            .resolve(Menu::Certificates, &names(&["2"]), now)
            .unwrap_err();
        assert!(e.to_string().contains("shows 2 items"), "{e}");
        // menus are numbered apart
        assert_eq!(
            n.resolve(Menu::ScepServers, &names(&["2"]), now).unwrap(),
            names(&["c"])
        );
        assert!(n.resolve_one(Menu::Certificates, "0,1", now).is_err());
    }

    #[test]
    fn session_numbers_survive_the_process() {
        let d = tempfile::tempdir().unwrap();
        let session = |key: &str| {
            let files = std::cell::OnceCell::new();
            let _ = files.set(SessionFiles {
                dir: Some(d.path().to_owned()),
                key: key.into(),
            });
            Numbers::Session(files, PathBuf::new(), 1)
        };
        let a = session("1-store");
        a.record(Menu::Certificates, &names(&["x", "y"]));
        let b = session("1-store");
        let never = || -> Result<Vec<String>, ManagerError> { panic!("not asked") };
        assert_eq!(
            b.resolve(Menu::Certificates, &names(&["1"]), never)
                .unwrap(),
            names(&["y"])
        );
        let other_store = session("1-other");
        assert_eq!(
            other_store
                .resolve(Menu::Certificates, &names(&["0"]), || Ok(names(&["z"])))
                .unwrap(),
            names(&["z"])
        );
    }

    #[test]
    fn number_lists() {
        assert!(is_number_list("0") && is_number_list("0,12"));
        assert!(!is_number_list("") && !is_number_list("0,") && !is_number_list("ca1"));
        assert!(!is_number_list("1234567890"));
    }
}
