//! Replacing a file atomically, for every program of the workspace: the classifier file,
//! the embedding cache, the lock's state files, audit snapshots and uploaded classifiers.
//! A reader (the daemon's reload, a second trainer run) sees the old file or the new one,
//! never half of one, and a crash leaves no partial file under the real name.

use std::fs::File;
use std::io;
use std::path::Path;

/// Replaces `path` with what `write` puts into a new file: a temporary file is created next
/// to it (same directory, so the rename cannot cross file systems) with permission bits
/// `mode` (reduced by the umask, as for any new file: `0o666` gives an ordinary file,
/// `0o600` one only its owner may read), filled by `write`, flushed to disk, renamed over
/// `path`, and the directory is flushed so the rename survives a power cut. On any error
/// the temporary file is removed and `path` is left as it was. The directory must exist.
///
/// The error is the bare I/O error; callers say which file it was and how to fix it.
pub fn replace_file(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // `.<name>.<random>.tmp`: hidden, and recognisably this file's if ever left behind.
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut tmp = builder.tempfile_in(dir)?;
    write(tmp.as_file_mut())?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Best effort: some file systems cannot flush a directory, and the file is in place.
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        log::debug!("cannot flush directory {}: {e}", dir.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_file_is_replaced_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        replace_file(&path, 0o600, |f| f.write_all(b"new")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        // A new file, not the old one rewritten: its looser mode is not kept.
        assert_eq!(mode(&path), 0o600);
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.onnx");
        std::fs::write(&path, b"old").unwrap();
        let err = replace_file(&path, 0o666, |f| {
            f.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "disk full");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["classifier.onnx"]);
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing/file");
        let err = replace_file(&path, 0o600, |_| Ok(())).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
