//! plumb's integration tests: one binary, modules by subject.
//!
//! The parity tests run Hugging Face transformers and tiktoken from `.venv` (installed by
//! `make test`) as the reference implementations.

mod browser;
mod browser_annotate;
mod browser_charts;
mod browser_conversation;
mod browser_fast_answers;
mod browser_overoptimisation;
mod browser_phone;
mod browser_project;
mod browser_ranking;
mod browser_research;
mod browser_runs;
mod browser_sample_order;
mod browser_team;
mod data_formats;
mod db;
mod gang_claims;
mod helpers;
mod labeling_people;
mod labeling_work;
#[cfg(feature = "trainer")]
mod loop_api;
mod registry;
mod schema;
mod users_cli;
mod web_account;
mod web_admin;
mod web_annotate;
mod web_answers;
mod web_app;
mod web_audit;
mod web_conformance;
mod web_data;
mod web_evals;
mod web_hostile;
mod web_models;
mod web_openapi;
mod web_overoptimisation;
mod web_pages;
mod web_project;
mod web_prompts;
mod web_runs;
mod web_sessions;
mod web_throttle;
mod web_tokens;

#[cfg(feature = "trainer")]
mod artifacts_s3;
#[cfg(feature = "trainer")]
mod cli;
#[cfg(feature = "trainer")]
mod demo_loop;
#[cfg(feature = "trainer")]
mod demo_world;
#[cfg(feature = "trainer")]
mod distributed;
#[cfg(feature = "trainer")]
mod eval_skills;
#[cfg(feature = "trainer")]
mod import;
#[cfg(feature = "trainer")]
mod parity;
#[cfg(feature = "trainer")]
mod precision;
#[cfg(feature = "trainer")]
mod sft_conversations;
#[cfg(feature = "trainer")]
mod simulate;
#[cfg(feature = "trainer")]
mod stages;
#[cfg(feature = "trainer")]
mod stages_dpo;
#[cfg(feature = "trainer")]
mod stages_rl;
#[cfg(feature = "trainer")]
mod task_families;
#[cfg(feature = "trainer")]
mod worker;
#[cfg(feature = "trainer")]
mod worker_conversations;
#[cfg(feature = "trainer")]
mod worker_dpo;
#[cfg(feature = "trainer")]
mod worker_faults;
#[cfg(feature = "trainer")]
mod worker_gangs;
#[cfg(feature = "trainer")]
mod worker_rl;
