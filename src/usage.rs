//! TODO: usage (being written).
