//! `trainer review DIR`: the faces the lock's data collector kept (`[collect]`), copied
//! from the lock, as an HTML page grouped by the person the lock suggested, with their
//! scores and the commands that add a chosen face to `images/<person>/`. Nothing is added
//! without the admin's say: `--accept PERSON FILE...` copies the named files.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use lock_daemon::collector::{read_index, Entry, Kind};

/// The page written, and what it holds.
#[derive(Debug)]
pub struct Reviewed {
    pub html: PathBuf,
    /// Faces per suggested person.
    pub people: BTreeMap<String, usize>,
    pub faces: usize,
}

impl fmt::Display for Reviewed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (person, n) in &self.people {
            writeln!(f, "{person}: {n} face(s)")?;
        }
        writeln!(
            f,
            "{} face(s); open {} to choose, then add the right ones with \
             `trainer review DIR --accept PERSON FILE...`",
            self.faces,
            self.html.display()
        )
    }
}

/// Writes the review page of collector directory `dir` to `html`.
pub fn review(dir: &Path, html: &Path, images: &Path) -> Result<Reviewed> {
    let entries = read_index(dir).with_context(|| {
        format!(
            "{} holds no collector index (index.jsonl): copy the lock's collect.dir here \
             (e.g. `scp -r lock:/var/lib/facelock/collected .`, with sudo on the lock)",
            dir.display()
        )
    })?;
    let mut groups: BTreeMap<String, Vec<&Entry>> = BTreeMap::new();
    for entry in &entries {
        let key = match entry.kind {
            Kind::Unknown => "(unknown)".to_owned(),
            _ => entry.suggested.clone(),
        };
        groups.entry(key).or_default().push(entry);
    }
    let page = page(dir, images, &groups);
    std::fs::write(html, page).with_context(|| format!("writing {}", html.display()))?;
    Ok(Reviewed {
        html: html.to_owned(),
        people: groups.iter().map(|(k, v)| (k.clone(), v.len())).collect(),
        faces: entries.len(),
    })
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A shell word.
fn quote(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn page(dir: &Path, images: &Path, groups: &BTreeMap<String, Vec<&Entry>>) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>facelock: collected \
         faces</title><style>body{font-family:sans-serif;margin:2em;color:#222}\
         figure{display:inline-block;margin:6px;font-size:12px;text-align:center}\
         img{height:120px}code{font-size:12px}</style></head><body>\
         <h1>Faces the lock kept</h1><p>low-margin: let in, but close to the gate; \
         near-miss: refused, then the same person was let in seconds later; unknown: \
         refused as a stranger. Add a face to a person's photos only if it shows them.</p>",
    );
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    for (person, entries) in groups {
        let _ = write!(out, "<h2>{} ({})</h2>", escape(person), entries.len());
        for e in entries {
            let file = absolute.join(&e.file);
            let _ = write!(
                out,
                "<figure><img src=\"file://{}\"><figcaption>{} · p {:.2} · sim {:.2}<br>{}\
                 </figcaption></figure>",
                escape(&file.to_string_lossy()),
                e.kind.as_str(),
                e.probability,
                e.similarity,
                escape(&e.time)
            );
        }
        if person != "(unknown)" {
            let files: Vec<String> = entries.iter().map(|e| quote(&e.file)).collect();
            let _ = write!(
                out,
                "<p>To add the ones that show {p}: <code>trainer review {d} --images {i} \
                 --accept {p} {f}</code> (leave out any that do not).</p>",
                p = escape(&quote(person)),
                d = escape(&quote(&dir.to_string_lossy())),
                i = escape(&quote(&images.to_string_lossy())),
                f = escape(&files.join(" "))
            );
        }
    }
    out.push_str("</body></html>\n");
    out
}

/// What `--accept` copied.
#[derive(Debug)]
pub struct Accepted {
    pub person: String,
    pub copied: Vec<PathBuf>,
}

impl crate::commands::Outcome for Reviewed {}

impl crate::commands::Outcome for Accepted {}

impl fmt::Display for Accepted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.copied {
            writeln!(f, "added {}", file.display())?;
        }
        writeln!(
            f,
            "{} photo(s) added for {}; retrain (`trainer train`) to use them",
            self.copied.len(),
            self.person
        )
    }
}

/// Copies the named collected files (paths relative to `dir`, as the index and the page
/// name them) into `images/<person>/`. Refuses files outside the collector's index.
pub fn accept(dir: &Path, images: &Path, person: &str, files: &[String]) -> Result<Accepted> {
    if person.is_empty() || person.contains('/') || person.starts_with('.') {
        bail!("{person:?} cannot be a person's folder name");
    }
    let known: Vec<String> = read_index(dir)
        .with_context(|| format!("{} holds no collector index", dir.display()))?
        .into_iter()
        .map(|e| e.file)
        .collect();
    let target = images.join(person);
    if !target.is_dir() {
        bail!(
            "{} does not exist: {person} is not enrolled there (check the name, or create \
             the folder to enrol a new person)",
            target.display()
        );
    }
    let mut copied = Vec::new();
    for file in files {
        if !known.contains(file) {
            bail!(
                "{file} is not in {}'s index: name files as the review page does, e.g. \
                 near-miss/…jpg",
                dir.display()
            );
        }
        let name = Path::new(file)
            .file_name()
            .context("a file name")?
            .to_owned();
        let to = target.join(name);
        if to.exists() {
            bail!("{} already exists", to.display());
        }
        std::fs::copy(dir.join(file), &to)
            .with_context(|| format!("copying {file} to {}", to.display()))?;
        copied.push(to);
    }
    Ok(Accepted {
        person: person.to_owned(),
        copied,
    })
}
