//! Files replaced whole or not at all: written to a temporary file beside the target,
//! synced, then renamed over it (and the directory synced), so a power cut leaves either
//! the old file or the new one, never half of one.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Replaces `path` with `bytes`, with permissions `mode`; makes the directory if needed.
/// A file that is replaced keeps its owner and group (whoever read it still can).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".edgecam-tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)?;
    // The mode of a file that existed is not changed by open.
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    if let Ok(old) = std::fs::metadata(path) {
        let new = std::fs::metadata(&tmp)?;
        if (old.uid(), old.gid()) != (new.uid(), new.gid()) {
            std::os::unix::fs::chown(&tmp, Some(old.uid()), Some(old.gid()))?;
        }
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is.
    if let Some(dir) = dir {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_with_its_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state");
        write(&path, b"one\n", 0o600).unwrap();
        write(&path, b"two\n", 0o644).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state")]);
    }

    #[test]
    fn an_unwritable_place_is_an_error() {
        assert!(write(Path::new("/proc/edgecam-no/such"), b"x", 0o600).is_err());
    }
}
