//! CCA key tokens, the host library's verb ABI, and its dynamic loading (being written).
