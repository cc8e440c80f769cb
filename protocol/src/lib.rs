//! Wire and file formats as serde types. No I/O.
