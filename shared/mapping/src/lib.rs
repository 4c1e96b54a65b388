//! p2c-mapping
