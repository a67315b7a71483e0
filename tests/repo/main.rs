//! The repository itself: no import circles between src/ files, no machine-local paths.

mod hygiene;
mod imports;
