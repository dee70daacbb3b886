//! Software CCA host library (being written).
