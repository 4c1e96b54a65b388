//! p2c-state
