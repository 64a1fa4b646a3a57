//! A stage setting declared once: its type, default, allowed range and help text, from
//! which the config struct, its `validate()`, the launch form and docs/runs.md are made.

use serde::Serialize;

use crate::problem::Problems;

/// What a setting holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingType {
    Integer,
    Number,
    Bool,
    /// A whole number, or none (`null`, an empty form field).
    OptionalInteger,
    /// A number, or none.
    OptionalNumber,
    /// One of these names (a JSON string; the form: a select).
    Choice(&'static [&'static str]),
}

impl SettingType {
    pub fn is_optional(self) -> bool {
        matches!(self, SettingType::OptionalInteger | SettingType::OptionalNumber)
    }

    pub fn is_integer(self) -> bool {
        matches!(self, SettingType::Integer | SettingType::OptionalInteger)
    }

    /// How a person would say it: `a whole number`, `a number or empty`.
    pub fn describe(self) -> &'static str {
        match self {
            SettingType::Integer => "a whole number",
            SettingType::Number => "a number",
            SettingType::Bool => "true or false",
            SettingType::OptionalInteger => "a whole number or empty",
            SettingType::OptionalNumber => "a number or empty",
            SettingType::Choice(_) => "one of its names",
        }
    }
}

/// One end of a range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    Unbounded,
    Inclusive(f64),
    Exclusive(f64),
}

/// The values a number may take (always finite).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Range {
    pub low: Bound,
    pub high: Bound,
}

impl Range {
    /// Any finite number.
    pub const ANY: Range = Range { low: Bound::Unbounded, high: Bound::Unbounded };
    /// (0, ∞)
    pub const POSITIVE: Range = Range { low: Bound::Exclusive(0.0), high: Bound::Unbounded };
    /// [0, ∞)
    pub const NON_NEGATIVE: Range = Range { low: Bound::Inclusive(0.0), high: Bound::Unbounded };
    /// [0, 1): shares and dropout.
    pub const FRACTION: Range = Range { low: Bound::Inclusive(0.0), high: Bound::Exclusive(1.0) };
    /// [0, 1]
    pub const UNIT: Range = Range { low: Bound::Inclusive(0.0), high: Bound::Inclusive(1.0) };
    /// (0, 1]
    pub const OPEN_UNIT: Range = Range { low: Bound::Exclusive(0.0), high: Bound::Inclusive(1.0) };

    pub const fn at_least(low: f64) -> Range {
        Range { low: Bound::Inclusive(low), high: Bound::Unbounded }
    }

    pub const fn between(low: f64, high: f64) -> Range {
        Range { low: Bound::Inclusive(low), high: Bound::Inclusive(high) }
    }

    pub fn contains(&self, x: f64) -> bool {
        let above = match self.low {
            Bound::Unbounded => true,
            Bound::Inclusive(low) => x >= low,
            Bound::Exclusive(low) => x > low,
        };
        let below = match self.high {
            Bound::Unbounded => true,
            Bound::Inclusive(high) => x <= high,
            Bound::Exclusive(high) => x < high,
        };
        x.is_finite() && above && below
    }

    /// "must be at least 1", "must be in [0, 1)", "must be a positive number".
    pub fn requirement(&self, integer: bool) -> String {
        let what = if integer { "a whole number" } else { "a number" };
        match (self.low, self.high) {
            (Bound::Unbounded, Bound::Unbounded) => format!("must be a finite {}", &what[2..]),
            (Bound::Exclusive(low), Bound::Unbounded) if low == 0.0 => {
                format!("must be a positive {}", &what[2..])
            }
            (Bound::Inclusive(low), Bound::Unbounded) if low == 0.0 && !integer => {
                "must be a number >= 0".to_owned()
            }
            (Bound::Inclusive(low), Bound::Unbounded) => format!("must be at least {low}"),
            (Bound::Exclusive(low), Bound::Unbounded) => format!("must be {what} > {low}"),
            (Bound::Unbounded, Bound::Inclusive(high)) => format!("must be at most {high}"),
            (Bound::Unbounded, Bound::Exclusive(high)) => format!("must be {what} < {high}"),
            (Bound::Inclusive(low), Bound::Inclusive(high)) if integer => {
                format!("must be {low} to {high}")
            }
            (low, high) => {
                let open = |b| match b {
                    Bound::Inclusive(x) => format!("[{x}"),
                    Bound::Exclusive(x) => format!("({x}"),
                    Bound::Unbounded => "(-∞".into(),
                };
                let close = |b| match b {
                    Bound::Inclusive(x) => format!("{x}]"),
                    Bound::Exclusive(x) => format!("{x})"),
                    Bound::Unbounded => "∞)".into(),
                };
                format!("must be in {}, {}", open(low), close(high))
            }
        }
    }

    /// The smallest value a form's number input may take, when there is one.
    pub fn min(&self) -> Option<f64> {
        match self.low {
            Bound::Inclusive(x) => Some(x),
            _ => None,
        }
    }

    pub fn max(&self) -> Option<f64> {
        match self.high {
            Bound::Inclusive(x) => Some(x),
            _ => None,
        }
    }
}

/// A stage setting as the contract declares it.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Setting {
    pub name: &'static str,
    /// The field's doc comment on one line: what it means, and the paper's value.
    pub help: &'static str,
    #[serde(rename = "type")]
    pub kind: SettingType,
    pub range: Range,
    /// Shown first on the launch form; the rest fold under "advanced".
    pub essential: bool,
    /// The rule of the model's width that an empty value takes (see [`crate::scale`]).
    pub scale: Option<crate::scale::Scale>,
}

impl Setting {
    /// The requirement in words, e.g. "a whole number, at least 1".
    /// The help, with the rule an empty value takes when the setting has one.
    pub fn explained(&self) -> String {
        match self.scale {
            Some(scale) => {
                let rule = scale.describe();
                format!("{} The rule: {}.", self.help, rule.strip_prefix("empty: ").unwrap_or(&rule))
            }
            None => self.help.to_owned(),
        }
    }

    pub fn requirement(&self) -> String {
        match self.kind {
            SettingType::Bool => "true or false".into(),
            SettingType::Choice(names) => names.join(" or "),
            kind => {
                let range = self.range.requirement(kind.is_integer());
                let range = range.strip_prefix("must be ").unwrap_or(&range).to_owned();
                if kind.is_optional() {
                    format!("{range}, or empty")
                } else {
                    range
                }
            }
        }
    }
}

/// A Rust type a setting may have, and how its value is checked against a range.
pub trait SettingValue {
    const KIND: SettingType;
    fn check(&self, field: &'static str, range: &Range, problems: &mut Problems);
}

/// The number types a setting may have: a value is checked against the range; an `Option`
/// of one only when it is present.
macro_rules! number_settings {
    ($(Option<$ty:ty> => $kind:ident;)*) => {$(
        impl SettingValue for Option<$ty> {
            const KIND: SettingType = SettingType::$kind;
            fn check(&self, field: &'static str, range: &Range, problems: &mut Problems) {
                if let Some(x) = self {
                    x.check(field, range, problems)
                }
            }
        }
    )*};
    ($($ty:ty => $kind:ident;)*) => {$(
        impl SettingValue for $ty {
            const KIND: SettingType = SettingType::$kind;
            fn check(&self, field: &'static str, range: &Range, problems: &mut Problems) {
                let x = *self as f64;
                if !range.contains(x) {
                    problems.push(field, format!("{}, got {x}", range.requirement(Self::KIND.is_integer())));
                }
            }
        }
    )*};
}

number_settings! {
    f64 => Number;
    i64 => Integer;
    usize => Integer;
    u64 => Integer;
}

number_settings! {
    Option<i64> => OptionalInteger;
    Option<f64> => OptionalNumber;
}

impl SettingValue for bool {
    const KIND: SettingType = SettingType::Bool;
    fn check(&self, _: &'static str, _: &Range, _: &mut Problems) {}
}

/// A setting that is one of a few names, as a Rust enum: its names, in the order the
/// form and the docs list them (the first is not necessarily the default).
pub trait SettingChoice {
    const NAMES: &'static [&'static str];
}

impl<T: SettingChoice> SettingValue for T {
    const KIND: SettingType = SettingType::Choice(T::NAMES);
    // serde admits only the names, so a value of the type is always one of them.
    fn check(&self, _: &'static str, _: &Range, _: &mut Problems) {}
}

/// What every stage's settings offer: their declarations, and every problem of a value.
pub trait StageSettings: Default + serde::Serialize + serde::de::DeserializeOwned {
    /// The stage's name, which prefixes its problems when it stands alone (`ppo.lr`).
    const STAGE: &'static str;
    const SETTINGS: &'static [Setting];
    /// Every problem, each named by the setting (`lr`, not yet `stage.lr`).
    fn problems(&self) -> Problems;
    /// These settings with every value that depends on the model's size filled in for a
    /// model `n_embd` wide: what a run records that it used.
    fn scaled_to(&self, n_embd: i64) -> Self;
}

/// Declares a stage's settings once: the struct (serde, unknown fields refused, a doc
/// comment per field), its `Default`, its `SETTINGS` and its range checks. A setting
/// marked `essential` is shown first on the launch form. A setting `=> Scale::…` is an
/// `Option<f64>` whose empty value takes that rule of the model's width: the struct gets
/// a method of the setting's name giving its value for a width, and `StageSettings::scaled_to`
/// fills every such value in. Checks that relate two settings go in
/// `$cross`, a function of the config and the problems found so far.
#[macro_export]
macro_rules! stage_settings {
    // The settings every stage shares, whatever it trains, are declared here once and
    // appended to each stage's own.
    (
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident for $stage:literal, cross = $cross:path { $($own:tt)* }
    ) => {
        $crate::stage_settings! {
            @define
            $(#[doc = $sdoc])*
            pub struct $name for $stage, cross = $cross {
                $($own)*
                /// Compute precision: bf16 is mixed precision (bf16 matrix products and
                /// attention, f32 norms, softmaxes, losses, master weights and AdamW
                /// state; frozen models wholly in bf16); auto is bf16 on CUDA, f32 on the
                /// CPU.
                pub precision: $crate::Precision = $crate::Precision::Auto, $crate::setting::Range::ANY;
            }
        }
    };
    (
        @define
        $(#[doc = $sdoc:literal])*
        pub struct $name:ident for $stage:literal, cross = $cross:path {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $ty:ty = $default:expr, $range:expr $(, $essential:ident)? $(=> $scale:expr)?;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for $name {
            fn default() -> Self {
                $name { $( $field: $default, )* }
            }
        }

        impl $crate::setting::StageSettings for $name {
            const STAGE: &'static str = $stage;
            const SETTINGS: &'static [$crate::setting::Setting] = &[
                $( $crate::setting::Setting {
                    name: stringify!($field),
                    // Each doc line starts with a space: joined, they read as one line.
                    help: concat!($($doc,)* "").trim_ascii_start(),
                    kind: <$ty as $crate::setting::SettingValue>::KIND,
                    range: $range,
                    essential: $crate::stage_settings!(@essential $($essential)?),
                    scale: $crate::stage_settings!(@scale $($scale)?),
                }, )*
            ];

            #[allow(unused_variables, unused_mut)]
            fn scaled_to(&self, n_embd: i64) -> Self {
                let mut scaled = self.clone();
                $($( scaled.$field = Some($scale.or_rule(self.$field, n_embd)); )?)*
                scaled
            }

            fn problems(&self) -> $crate::problem::Problems {
                let mut problems = $crate::problem::Problems::default();
                $( $crate::setting::SettingValue::check(&self.$field, stringify!($field), &$range, &mut problems); )*
                $cross(self, &mut problems);
                problems
            }
        }

        impl $name {
            $($(
                #[doc = concat!("`", stringify!($field), "` for a model `n_embd` wide: the value set, else the rule's.")]
                pub fn $field(&self, n_embd: i64) -> f64 {
                    $scale.or_rule(self.$field, n_embd)
                }
            )?)*


            /// Every problem of these settings, named `stage.setting` when displayed
            /// alone (`ppo.lr: must be a positive number, got -1`).
            pub fn validate(&self) -> Result<(), $crate::problem::Problems> {
                use $crate::setting::StageSettings;
                self.problems().under($stage).into_result()
            }
        }
    };
    (@scale $scale:expr) => { Some($scale) };
    (@scale) => { None };
    (@essential essential) => { true };
    (@essential) => { false };
}
