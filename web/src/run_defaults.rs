//! The stage settings a run launch form starts from. The web app never links the
//! trainer, so whoever starts it (`plumb serve`, a test) hands them over; without them
//! the forms start empty and the worker applies its defaults.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub struct RunDefaults {
    by_kind: BTreeMap<String, serde_json::Value>,
}

impl RunDefaults {
    /// Run kind (`sft`, `ppo`, …) → its stage settings as a JSON object.
    pub fn new(by_kind: BTreeMap<String, serde_json::Value>) -> RunDefaults {
        RunDefaults { by_kind }
    }

    /// The defaults of `kind`, if known.
    pub fn of(&self, kind: &str) -> Option<&serde_json::Value> {
        self.by_kind.get(kind)
    }
}
