//! How much disk a directory takes (files the broker or the databases keep).

use std::path::Path;

/// Bytes of every file under `dir` (0 when it cannot be read).
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&entry.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// Bytes of the files under `dir` whose name matches `keep`.
pub(crate) fn files_bytes(dir: &Path, keep: &dyn Fn(&str) -> bool) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.metadata() {
            Ok(m) if m.is_dir() => files_bytes(&entry.path(), keep),
            Ok(m) if keep(&entry.file_name().to_string_lossy()) => m.len(),
            Ok(_) | Err(_) => 0,
        })
        .sum()
}
