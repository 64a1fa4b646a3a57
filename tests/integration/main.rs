//! plumb's integration tests: one binary, modules by subject.
//!
//! The parity tests run Hugging Face transformers and tiktoken from `.venv` (installed by
//! `make test`) as the reference implementations.

mod db;
mod helpers;
mod schema;

#[cfg(feature = "trainer")]
mod cli;
#[cfg(feature = "trainer")]
mod demo_world;
#[cfg(feature = "trainer")]
mod parity;
#[cfg(feature = "trainer")]
mod stages;
