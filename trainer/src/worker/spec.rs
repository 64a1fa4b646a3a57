//! A run's config, parsed by the run contract (the `spec` crate): the same check the web
//! made before it queued the run, kept here as a second line of defence with the same
//! words, so a config written straight into Postgres fails at once, naming every field.

pub use ::spec::eval::{MAX_PROBE_GROUPS, MAX_PROBE_SAMPLES};
pub use ::spec::{
    EvalRun, PpoRun, PretrainRun, Probe, PromptSet, RlRun, RunSpec, SampleRun, SkillsSpec, TrainRun,
};

use registry::runs::RunKind;

/// A config the worker cannot run; the message names every bad field.
#[derive(Debug, thiserror::Error)]
#[error("the run's config: {0}")]
pub struct SpecError(pub ::spec::Problems);

/// The run's spec, or every problem of its config.
pub fn parse(kind: RunKind, config: &serde_json::Value) -> Result<RunSpec, SpecError> {
    RunSpec::parse(kind, config).map_err(SpecError)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_bad_config_is_refused_naming_every_field() {
        let config = json!({ "model_name": "p", "policy": "s", "reward": "r",
                             "stage": { "kl_coef": -1, "batch_size": -4 } });
        let e = parse(RunKind::Ppo, &config).unwrap_err().to_string();
        assert_eq!(
            e,
            "the run's config: stage.batch_size: must be at least 1, got -4; \
             stage.kl_coef: must be a number >= 0, got -1"
        );
    }
}
