//! Reading the settings sources from disk: thin wrappers over the pure parsers' inputs.

use std::io;
use std::path::{Path, PathBuf};

use super::load::SourceText;

/// A source file or directory that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading {path}: {cause}")]
    File { path: PathBuf, cause: io::Error },
    #[error("listing config directory {path}: {cause}")]
    Dir { path: PathBuf, cause: io::Error },
}

/// Reads a whole text file (invalid UTF-8 is replaced, so one stray byte does not lose the
/// rest of a kernel command line).
pub fn read_source(path: &Path) -> Result<SourceText, ReadError> {
    let bytes = std::fs::read(path).map_err(|cause| ReadError::File {
        path: path.to_path_buf(),
        cause,
    })?;
    Ok(SourceText {
        path: path.to_path_buf(),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Like [`read_source`], but a file that does not exist is `None`.
pub fn read_optional_source(path: &Path) -> Result<Option<SourceText>, ReadError> {
    match read_source(path) {
        Ok(text) => Ok(Some(text)),
        Err(ReadError::File { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error),
    }
}

/// The `*.conf` files of a config directory in lexical order of their names, as oslo's
/// `--config-dir` reads them. Directories named `*.conf` are skipped.
pub fn config_dir_files(dir: &Path) -> Result<Vec<PathBuf>, ReadError> {
    let dir_error = |cause| ReadError::Dir {
        path: dir.to_path_buf(),
        cause,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(dir_error)? {
        let entry = entry.map_err(dir_error)?;
        let path = entry.path();
        let is_conf = path.extension().is_some_and(|ext| ext == "conf");
        // Follows symlinks: a link to a config file counts, a dangling one is reported when
        // it is read.
        let is_dir = std::fs::metadata(&path).is_ok_and(|meta| meta.is_dir());
        if is_conf && !is_dir {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_dir_lists_conf_files_in_lexical_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.conf",
            "a.conf",
            "10-x.conf",
            "9-y.conf",
            "notes.txt",
            "c.conf.bak",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.conf")).unwrap();
        let names: Vec<String> = config_dir_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["10-x.conf", "9-y.conf", "a.conf", "b.conf"]);
    }

    #[test]
    fn missing_files_and_dirs_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = read_source(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("reading {}: ", missing.display())),
            "{err}"
        );
        assert!(read_optional_source(&missing).unwrap().is_none());
        let err = config_dir_files(&missing).unwrap_err().to_string();
        assert!(err.starts_with("listing config directory"), "{err}");
    }

    #[test]
    fn invalid_utf8_does_not_lose_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cmdline");
        std::fs::write(&path, b"quiet \xff ipa-debug=1\n").unwrap();
        let source = read_source(&path).unwrap();
        assert!(source.text.ends_with("ipa-debug=1\n"));
        assert_eq!(source.path, path);
    }
}
