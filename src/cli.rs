//! TODO: cli (being written).
