//! Sandbox
