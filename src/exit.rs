//! TODO: exit (being written).
