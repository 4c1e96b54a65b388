//! p2c-sync
