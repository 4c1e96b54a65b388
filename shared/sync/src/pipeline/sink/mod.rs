//! Sinks: how records are written. `fno`: keys, plans (create / PATCH the differing fields / nothing) and
//! `$batch` change sets to F&O. `sales`: Dataverse tables, their comparison rules and `$batch` writes.

pub mod fno;
pub mod sales;
