//! Writing disk images (the `write_image` deploy step, spec §5).

pub mod checksum;
pub mod format;
pub mod target;
pub mod writer;

#[cfg(test)]
pub mod fake;
