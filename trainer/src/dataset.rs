//! The enrolment folder: `images/<person>/*.{jpg,jpeg,png}`, one folder per person.

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
    pub path: PathBuf,
    pub reason: String,
}

/// The photos of a folder tree, sorted by person then file name, plus the
/// files that are not photos.
#[derive(Debug, Default)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub skipped: Vec<Skipped>,
}

const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
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
            let name = entry.file_name().map(|n| n.to_string_lossy().into_owned());
            let Some(name) = name.filter(|n| !n.starts_with('.')) else {
                continue;
            };
            if entry.is_dir() {
                dataset.add_folder(&entry, &name)?;
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
                root.display()
            );
        }
        Ok(dataset)
    }

    /// Reads every photo below `root` (any depth), labelled by its parent
    /// folder's name: for the `--unknown` set, whose labels do not matter.
    pub fn anyone(root: &Path) -> Result<Dataset> {
        let mut dataset = Dataset::default();
        let mut stack = vec![root.to_owned()];
        while let Some(dir) = stack.pop() {
            for entry in sorted_entries(&dir)? {
                if entry.is_dir() {
                    stack.push(entry);
                } else if is_photo(&entry) {
                    let person = dir
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
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
            let hidden = entry
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'));
            if hidden {
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
    fn an_empty_folder_is_an_error_that_explains_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let err = Dataset::people(dir.path()).unwrap_err().to_string();
        assert!(err.contains("one folder per person"), "{err}");
    }
}
