//! plumb's web app: annotators' and researchers' pages and the JSON API, server-rendered
//! with askama on actix-web. It never links libtorch: work that needs a model is a run
//! row in Postgres that a trainer worker claims.

pub mod auth;
pub mod caller;
pub mod error;
pub mod json_body;
pub mod markdown;
pub mod metrics;
pub mod query;
pub mod routes;
pub mod settings;
pub mod startup;

pub use settings::Settings;
pub use startup::Application;
