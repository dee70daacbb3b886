//! `opencryptoki.conf` parsing and slot → token data store resolution (being written).
