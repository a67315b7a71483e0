//! GGUF reader (placeholder until the reader lands).
