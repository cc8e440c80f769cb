//! rivet-agent library.
