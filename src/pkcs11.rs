//! TODO: pkcs11 (being written).
