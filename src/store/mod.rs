//! openCryptoki token data store, read and rewritten offline (being written).
