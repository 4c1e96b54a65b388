//! p2c-dynamics
