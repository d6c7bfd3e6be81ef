//! Forgetting a person (`trainer forget NAME`): their folder in the image tree and their
//! photos' embeddings in the cache. The lock keeps knowing them until a classifier
//! trained without them is pushed, and the answer says so.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::dataset::{shown, Dataset};

/// What `trainer forget` is about to remove.
#[derive(Debug, Clone)]
pub struct Plan {
    pub person: String,
    pub folder: PathBuf,
    /// Every file in the folder (photos or not).
    pub files: Vec<PathBuf>,
}

/// Finds the person's folder under `images`; an unknown name lists the people there.
pub fn plan(images: &Path, person: &str) -> Result<Plan> {
    let dataset = Dataset::people(images)?;
    let Some(folder) = dataset.folders.get(person) else {
        let known: Vec<&str> = dataset.folders.keys().map(String::as_str).collect();
        bail!(
            "nobody called \"{person}\" under {}; the people there are: {}",
            shown(images),
            known.join(", ")
        );
    };
    let mut files = Vec::new();
    let mut stack = vec![folder.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .with_context(|| format!("cannot list folder {}", shown(&dir)))?
        {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(Plan {
        person: person.to_owned(),
        folder: folder.clone(),
        files,
    })
}

/// What was removed.
#[derive(Debug, Clone, PartialEq)]
pub struct Forgotten {
    pub person: String,
    pub folder: PathBuf,
    pub files: usize,
    pub cached: usize,
}

impl fmt::Display for Forgotten {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "removed {} ({} file(s)) and {} cached embedding(s) of {}",
            shown(&self.folder),
            self.files,
            self.cached,
            self.person
        )?;
        write!(
            f,
            "the lock still lets {} in: train a new classifier and push it to the lock",
            self.person
        )
    }
}

/// Removes the person's cached embeddings (from every cache file in `cache_dir`), then
/// their folder. The cache goes first: should the folder's removal fail half-way, no
/// embedding of a removed photo stays behind.
pub fn forget(plan: &Plan, cache_dir: Option<&Path>) -> Result<Forgotten> {
    let mut hashes = HashSet::new();
    for file in &plan.files {
        let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", shown(file)))?;
        hashes.insert(recognition::models::sha256_hex(&bytes));
    }
    let cached = match cache_dir {
        Some(dir) => crate::enroll::forget_cached(dir, &hashes)?,
        None => 0,
    };
    std::fs::remove_dir_all(&plan.folder)
        .with_context(|| format!("cannot remove {}", shown(&plan.folder)))?;
    Ok(Forgotten {
        person: plan.person.clone(),
        folder: plan.folder.clone(),
        files: plan.files.len(),
        cached,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_name_lists_the_people_there() {
        let dir = tempfile::tempdir().unwrap();
        for p in ["ada", "bob"] {
            std::fs::create_dir(dir.path().join(p)).unwrap();
            std::fs::write(dir.path().join(p).join("1.jpg"), p).unwrap();
        }
        let err = plan(dir.path(), "eve").unwrap_err().to_string();
        assert!(
            err.contains("nobody called \"eve\"") && err.contains("ada, bob"),
            "{err}"
        );
    }

    #[test]
    fn forgetting_removes_the_folder_and_only_that_persons_cache_entries() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        for (p, content) in [("ada", "ada photo"), ("bob", "bob photo")] {
            std::fs::create_dir_all(images.join(p)).unwrap();
            std::fs::write(images.join(p).join("1.jpg"), content).unwrap();
        }
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let hash = |s: &str| recognition::models::sha256_hex(s.as_bytes());
        let entry = r#"{"used":1,"faces":1,"embedded":[]}"#;
        let file = format!(
            r#"{{"{}":{entry},"{}":{entry}}}"#,
            hash("ada photo"),
            hash("bob photo")
        );
        std::fs::write(cache.join("embeddings-a.json"), &file).unwrap();
        std::fs::write(cache.join("embeddings-b.json"), &file).unwrap();

        let plan = plan(&images, "ada").unwrap();
        let done = forget(&plan, Some(&cache)).unwrap();
        assert_eq!((done.files, done.cached), (1, 2));
        assert!(!images.join("ada").exists() && images.join("bob/1.jpg").exists());
        for f in ["embeddings-a.json", "embeddings-b.json"] {
            let left = std::fs::read_to_string(cache.join(f)).unwrap();
            assert!(!left.contains(&hash("ada photo")) && left.contains(&hash("bob photo")));
        }
        assert!(done.to_string().contains("the lock still lets ada in"));
    }
}
