//! Nothing shared: each benchmark is a binary of its own (`src/bench_*.rs`).
