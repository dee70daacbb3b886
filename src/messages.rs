//! TODO: messages (being written).
