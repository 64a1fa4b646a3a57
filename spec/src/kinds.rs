//! The kind enums of the contract, each with one `as_str` and one `FromStr`: what a run
//! does, what a model version is, and what a dataset snapshot lists. Postgres stores
//! them as enums of the same names (feature `sqlx`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Declares a kind enum with its names: `as_str`, `FromStr` (an error that lists the
/// names), `Display` and `ALL`.
macro_rules! kind_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident as $what:literal, $pg:literal {
            $( $(#[doc = $doc:literal])* $variant:ident = $text:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(type_name = $pg, rename_all = "lowercase"))]
        #[serde(rename_all = "lowercase")]
        pub enum $name {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )*
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownKind;
            fn from_str(s: &str) -> Result<Self, UnknownKind> {
                match s {
                    $( $text => Ok($name::$variant), )*
                    _ => Err(UnknownKind {
                        what: $what,
                        given: s.to_owned(),
                        known: &[$($text),*],
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A name that is none of a kind enum's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownKind {
    pub what: &'static str,
    pub given: String,
    pub known: &'static [&'static str],
}

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown {} {:?} (expected {})", self.what, self.given, self.known.join(", "))
    }
}

impl std::error::Error for UnknownKind {}

kind_enum! {
    /// What a run does.
    pub enum RunKind as "run kind", "run_kind" {
        /// Language modelling on a corpus (GPT-1/GPT-2).
        Pretrain = "pretrain",
        /// Supervised fine-tuning on demonstrations.
        Sft = "sft",
        /// Reward-model training on rankings.
        Reward = "reward",
        /// PPO of an SFT policy against a reward model.
        Ppo = "ppo",
        /// Direct preference optimisation of an SFT policy on rankings.
        Dpo = "dpo",
        /// REINFORCE leave-one-out of an SFT policy against a reward model.
        Rloo = "rloo",
        /// Group relative policy optimisation of an SFT policy against a reward model.
        Grpo = "grpo",
        /// Sampling K outputs per prompt for a ranking batch.
        Sample = "sample",
        /// Versions scored side by side on held-out prompts.
        Eval = "eval",
    }
}

kind_enum! {
    /// What a registered model version is.
    pub enum ModelKind as "model kind", "model_kind" {
        /// Pretrained (or imported) language model.
        Base = "base",
        /// Fine-tuned on demonstrations.
        Sft = "sft",
        Reward = "reward",
        /// Trained from an SFT model by PPO, DPO, RLOO or GRPO.
        Policy = "policy",
    }
}

kind_enum! {
    /// What a dataset snapshot lists.
    pub enum SnapshotKind as "snapshot kind", "snapshot_kind" {
        Prompts = "prompts",
        Demonstrations = "demonstrations",
        Rankings = "rankings",
        Comparisons = "comparisons",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_parses_from_its_own_name() {
        for kind in RunKind::ALL {
            assert_eq!(kind.as_str().parse::<RunKind>(), Ok(*kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for kind in ModelKind::ALL {
            assert_eq!(kind.as_str().parse::<ModelKind>(), Ok(*kind));
        }
        for kind in SnapshotKind::ALL {
            assert_eq!(kind.as_str().parse::<SnapshotKind>(), Ok(*kind));
        }
    }

    #[test]
    fn an_unknown_kind_names_the_known_ones() {
        let e = "kto".parse::<RunKind>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown run kind \"kto\" (expected pretrain, sft, reward, ppo, dpo, rloo, grpo, sample, eval)"
        );
    }
}
