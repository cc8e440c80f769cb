//! A local image file (`file://`): on the boot ISO or another attached medium.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Feed, FeedMsg, Source, SourceError, FEED_CHUNK};
use crate::image::checksum::Algorithm;

/// A local file, its feed produced by a reader thread.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    file: Arc<File>,
    len: u64,
    feed: Option<Feed>,
}

impl FileSource {
    pub fn open(path: &Path, algorithm: Algorithm) -> Result<FileSource, SourceError> {
        let fatal = |e: std::io::Error| SourceError::Fatal(format!("{}: {e}", path.display()));
        let file = Arc::new(File::open(path).map_err(fatal)?);
        let len = file.metadata().map_err(fatal)?.len();
        let (tx, feed) = Feed::channel(algorithm)?;
        let reader = file.clone();
        let pool = feed.pool();
        let shown = path.display().to_string();
        std::thread::Builder::new()
            .name("image-file-reader".into())
            .spawn(move || {
                let mut offset = 0u64;
                loop {
                    // Read into the chunk's spare capacity (no zeroing it first), up to a
                    // whole chunk or the end of the file.
                    let mut chunk = pool.take();
                    let n = match (&*reader).take(FEED_CHUNK as u64).read_to_end(&mut chunk) {
                        Ok(n) => n,
                        Err(e) => {
                            let error = SourceError::Failed(format!(
                                "reading {shown} at byte {offset}: {e}"
                            ));
                            let _ = tx.blocking_send(FeedMsg::Failed(error));
                            return;
                        }
                    };
                    if n == 0 {
                        let _ = tx.blocking_send(FeedMsg::End { len: offset });
                        return;
                    }
                    offset += n as u64;
                    if tx.blocking_send(FeedMsg::Data(chunk)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|e| SourceError::Failed(format!("starting a reader thread: {e}")))?;
        Ok(FileSource {
            path: path.to_path_buf(),
            file,
            len,
            feed: Some(feed),
        })
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        self.path.display().to_string()
    }

    fn length(&self) -> Option<u64> {
        Some(self.len)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), SourceError> {
        self.file.read_exact_at(buf, offset).map_err(|e| {
            SourceError::Failed(format!(
                "reading {} bytes at {offset} of {}: {e}",
                buf.len(),
                self.path.display()
            ))
        })
    }

    fn take_feed(&mut self) -> Option<Feed> {
        self.feed.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_streams_hashed_and_reads_at_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("img");
        let content: Vec<u8> = (0..3 * FEED_CHUNK + 5).map(|i| i as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let mut source = FileSource::open(&path, Algorithm::Sha256).unwrap();
        assert_eq!(source.length(), Some(content.len() as u64));
        let mut at = [0u8; 4];
        source.read_at(FEED_CHUNK as u64 + 1, &mut at).unwrap();
        assert_eq!(at, [1, 2, 3, 4]);
        let mut feed = source.take_feed().unwrap();
        let mut read = Vec::new();
        feed.read_to_end(&mut read).unwrap();
        assert_eq!(read, content);
        let mut hasher = Algorithm::Sha256.hasher();
        hasher.update(&content);
        assert_eq!(
            feed.finish().unwrap(),
            (content.len() as u64, hasher.finish_hex())
        );
        assert!(source.take_feed().is_none());
        assert!(matches!(
            source.read_at(content.len() as u64, &mut at),
            Err(SourceError::Failed(_))
        ));
    }

    #[test]
    fn a_missing_file_is_fatal() {
        assert!(matches!(
            FileSource::open(Path::new("/nonexistent/img"), Algorithm::Sha256),
            Err(SourceError::Fatal(m)) if m.contains("/nonexistent/img")
        ));
    }
}
