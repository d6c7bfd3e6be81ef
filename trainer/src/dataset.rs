//! The enrolment folder: `images/<person>/*.{jpg,jpeg,png}`, one folder per person.
//!
//! File names need not be UTF-8. A folder whose name is not becomes a person named by
//! its escaped bytes (`caf\xE9`), so two such folders never merge into one person; a
//! folder whose name reads the same as another's is refused with both names shown.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One photo and whom it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub person: String,
    pub path: PathBuf,
}

/// A file that was not used, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    #[serde(serialize_with = "serialize_path")]
    pub path: PathBuf,
    pub reason: String,
}

/// A name as text: unchanged when it is UTF-8; otherwise with its invalid bytes, and
/// backslashes, escaped (`caf\xE9`), so distinct names stay distinct.
pub fn escaped(name: &OsStr) -> String {
    match name.to_str() {
        Some(text) => text.to_owned(),
        None => {
            let debug = format!("{name:?}");
            debug[1..debug.len() - 1].to_owned()
        }
    }
}

/// A path for messages and reports, non-UTF-8 bytes escaped (see [`escaped`]).
pub fn shown(path: &Path) -> String {
    escaped(path.as_os_str())
}

/// Serialises a path as a JSON string, escaping it when it is not UTF-8 (serde's own
/// serialisation of such a path fails).
pub fn serialize_path<S: serde::Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&shown(path))
}

/// The photos of a folder tree, sorted by person then file name, plus the
/// files that are not photos.
#[derive(Debug, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub skipped: Vec<Skipped>,
    /// Every person's folder, photos or not, by person.
    pub folders: BTreeMap<String, PathBuf>,
}

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

fn is_hidden(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

/// The (device, inode) pair of what `path` points to, following links.
#[cfg(unix)]
fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn file_id(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read folder {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("cannot list folder {}", dir.display()))?;
    entries.sort();
    Ok(entries)
}

impl Dataset {
    /// Reads `root/<person>/*`: one sub-folder per person. Files directly in
    /// `root`, hidden entries and non-photo files are listed as skipped.
    pub fn people(root: &Path) -> Result<Dataset> {
        let mut dataset = Dataset::default();
        for entry in sorted_entries(root)? {
            let Some(name) = entry.file_name().filter(|n| !is_hidden(n)) else {
                continue;
            };
            if entry.is_dir() {
                let person = escaped(name);
                if let Some(other) = dataset.folders.get(&person) {
                    let reason = format!(
                        "its folder's name reads the same as {} (\"{person}\"); rename one \
                         of the two folders",
                        shown(other)
                    );
                    log::warn!("person folder {} refused: {reason}", shown(&entry));
                    dataset.skip_folder(&entry, &reason)?;
                    continue;
                }
                if name.to_str().is_none() {
                    log::warn!(
                        "person folder {} has a name that is not valid UTF-8: the person is \
                         named \"{person}\"; rename the folder to choose the name",
                        shown(&entry)
                    );
                }
                dataset.folders.insert(person.clone(), entry.clone());
                dataset.add_folder(&entry, &person)?;
            } else {
                dataset.skipped.push(Skipped {
                    path: entry,
                    reason: "not inside a person's folder (expected images/<person>/photo.jpg)"
                        .into(),
                });
            }
        }
        if dataset.samples.is_empty() {
            bail!(
                "no photos found under {}: expected one folder per person holding .jpg/.jpeg/.png files",
                shown(root)
            );
        }
        Ok(dataset)
    }

    /// Reads every photo below `root` (any depth), labelled by its parent
    /// folder's name: for the `--unknown` set, whose labels do not matter.
    /// Symbolic links are followed, but every folder is read and every file
    /// counted once, so a link loop neither hangs the walk nor repeats photos.
    pub fn anyone(root: &Path) -> Result<Dataset> {
        let mut dataset = Dataset::default();
        let mut seen_dirs = HashSet::new();
        let mut seen_files: HashMap<_, PathBuf> = HashMap::new();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            if let Some(id) = file_id(&dir) {
                if !seen_dirs.insert(id) {
                    continue;
                }
            }
            for entry in sorted_entries(&dir)? {
                if entry.is_dir() {
                    stack.push(entry);
                } else if is_photo(&entry) {
                    if let Some(id) = file_id(&entry) {
                        if let Some(first) = seen_files.get(&id) {
                            dataset.skipped.push(Skipped {
                                reason: format!(
                                    "the same file as {} (through a link); counted once",
                                    shown(first)
                                ),
                                path: entry,
                            });
                            continue;
                        }
                        seen_files.insert(id, entry.clone());
                    }
                    let person = dir.file_name().map(escaped).unwrap_or_default();
                    dataset.samples.push(Sample {
                        person,
                        path: entry,
                    });
                } else {
                    dataset.skipped.push(Skipped {
                        path: entry,
                        reason: "not a .jpg, .jpeg or .png file".into(),
                    });
                }
            }
        }
        dataset.samples.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(dataset)
    }

    fn add_folder(&mut self, dir: &Path, person: &str) -> Result<()> {
        for entry in sorted_entries(dir)? {
            if entry.file_name().is_some_and(is_hidden) {
                continue;
            }
            if entry.is_file() && is_photo(&entry) {
                self.samples.push(Sample {
                    person: person.to_owned(),
                    path: entry,
                });
            } else {
                self.skipped.push(Skipped {
                    path: entry,
                    reason: "not a .jpg, .jpeg or .png file".into(),
                });
            }
        }
        Ok(())
    }

    /// Lists every file of a refused person folder as skipped, with the reason.
    fn skip_folder(&mut self, dir: &Path, reason: &str) -> Result<()> {
        for entry in sorted_entries(dir)? {
            if !entry.file_name().is_some_and(is_hidden) {
                self.skipped.push(Skipped {
                    path: entry,
                    reason: reason.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// The people, sorted.
    pub fn labels(&self) -> Vec<String> {
        let mut labels: Vec<String> = self.samples.iter().map(|s| s.person.clone()).collect();
        labels.sort();
        labels.dedup();
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_are_folders_and_other_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("alice")).unwrap();
        std::fs::create_dir_all(root.join("bob")).unwrap();
        std::fs::write(root.join("alice/1.jpg"), b"x").unwrap();
        std::fs::write(root.join("alice/2.PNG"), b"x").unwrap();
        std::fs::write(root.join("alice/notes.txt"), b"x").unwrap();
        std::fs::write(root.join("bob/a.jpeg"), b"x").unwrap();
        std::fs::write(root.join("stray.jpg"), b"x").unwrap();
        let data = Dataset::people(root).unwrap();
        assert_eq!(data.labels(), vec!["alice", "bob"]);
        assert_eq!(data.samples.len(), 3);
        let skipped: Vec<_> = data.skipped.iter().map(|s| s.path.clone()).collect();
        assert_eq!(
            skipped,
            vec![root.join("alice/notes.txt"), root.join("stray.jpg")]
        );
    }

    #[test]
    fn non_utf8_person_folders_stay_distinct_people() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [&b"\xff"[..], b"\xfe", b"caf\xe9"] {
            let folder = root.join(OsStr::from_bytes(name));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("1.jpg"), b"x").unwrap();
        }
        // Reads the same as the escaped name of the folder b"\xff".
        let lookalike = root.join(OsStr::new("\\xFF"));
        std::fs::create_dir_all(&lookalike).unwrap();
        std::fs::write(lookalike.join("1.jpg"), b"x").unwrap();
        let data = Dataset::people(root).unwrap();
        let labels = data.labels();
        assert_eq!(labels, ["\\xFE", "\\xFF", "caf\\xE9"]);
        // The folder named b"\xff" reads like the one named `\xFF`: refused, not merged.
        assert_eq!(data.samples.len(), 3);
        assert_eq!(data.skipped.len(), 1, "{:?}", data.skipped);
        assert!(
            data.skipped[0].reason.contains("reads the same as"),
            "{:?}",
            data.skipped
        );
        assert_eq!(
            shown(&root.join(OsStr::from_bytes(b"\xff"))),
            format!("{}/\\xFF", root.display())
        );
    }

    #[test]
    fn a_symlink_loop_in_the_unknown_set_counts_each_photo_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        for name in ["a/1.jpg", "a/2.jpg", "a/b/3.jpg"] {
            std::fs::write(root.join(name), b"x").unwrap();
        }
        std::os::unix::fs::symlink("..", root.join("a/b/up")).unwrap();
        std::os::unix::fs::symlink(".", root.join("a/here")).unwrap();
        std::os::unix::fs::symlink("1.jpg", root.join("a/link.jpg")).unwrap();
        let data = Dataset::anyone(root).unwrap();
        assert_eq!(data.samples.len(), 3, "{:#?}", data.samples);
        let links: Vec<_> = data
            .skipped
            .iter()
            .filter(|s| s.reason.contains("same file"))
            .collect();
        assert_eq!(links.len(), 1, "{:#?}", data.skipped);
    }

    #[test]
    fn an_empty_folder_is_an_error_that_explains_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = Dataset::people(dir.path()).unwrap_err().to_string();
        assert!(err.contains("one folder per person"), "{err}");
    }
}
