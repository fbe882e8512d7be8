//! Parameters: what a stage kind declares (type, default, doc), and the
//! effective values one stage runs with.
//!
//! [`Params::resolve`] is the one place where declared defaults, the
//! pipeline file, variants and `--set` overrides become checked values.

use std::collections::BTreeMap;

use crate::StageKind;

/// A parameter value. TOML's own value type: parsing `pipeline.toml` and
/// `--set` overrides yields it directly.
pub type Value = toml::Value;

/// The type a declared parameter accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    Bool,
    /// A 64-bit integer within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// A float; an integer literal is accepted and widened (`lr = 1` is `1.0`).
    Float {
        min: f64,
        max: f64,
    },
    /// A string; when `choices` is not empty it must be one of them.
    Str {
        choices: &'static [&'static str],
    },
    /// A list of strings; when `choices` is not empty each must be one of them.
    StrList {
        choices: &'static [&'static str],
    },
    /// A table of scalar values (the `command` kind's `params`).
    Table,
}

impl ParamType {
    pub const ANY_INT: ParamType = ParamType::Int {
        min: i64::MIN,
        max: i64::MAX,
    };
    pub const ANY_STR: ParamType = ParamType::Str { choices: &[] };

    /// A short human name for error messages: "an integer in 1..=64".
    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "a boolean (true or false)".into(),
            ParamType::Int { min, max } if *min == i64::MIN && *max == i64::MAX => {
                "an integer".into()
            }
            ParamType::Int { min, max } if *max == i64::MAX => format!("an integer >= {min}"),
            ParamType::Int { min, max } => format!("an integer in {min}..={max}"),
            ParamType::Float { min, max } if min.is_infinite() && max.is_infinite() => {
                "a number".into()
            }
            ParamType::Float { min, max } => format!("a number in {min}..={max}"),
            ParamType::Str { choices } if choices.is_empty() => "a string".into(),
            ParamType::Str { choices } => format!("one of {}", quoted(choices)),
            ParamType::StrList { choices } if choices.is_empty() => "a list of strings".into(),
            ParamType::StrList { choices } => format!("a list of {}", quoted(choices)),
            ParamType::Table => "a table of values".into(),
        }
    }

    /// Checks `value` against the type and returns its canonical form
    /// (integers widened to floats where a float is declared), or a message
    /// saying what is wrong.
    pub fn check(&self, value: &Value) -> Result<Value, String> {
        let wrong = || {
            Err(format!(
                "expected {}, found {} `{}`",
                self.describe(),
                value.type_str(),
                value
            ))
        };
        match (self, value) {
            (ParamType::Bool, Value::Boolean(_)) => Ok(value.clone()),
            (ParamType::Int { min, max }, Value::Integer(i)) => {
                if i < min || i > max {
                    wrong()
                } else {
                    Ok(value.clone())
                }
            }
            (ParamType::Float { min, max }, Value::Integer(i)) => ParamType::Float {
                min: *min,
                max: *max,
            }
            .check(&Value::Float(*i as f64)),
            (ParamType::Float { min, max }, Value::Float(f)) => {
                if f.is_nan() || f < min || f > max {
                    wrong()
                } else {
                    Ok(value.clone())
                }
            }
            (ParamType::Str { choices }, Value::String(s)) => {
                if choices.is_empty() || choices.contains(&s.as_str()) {
                    Ok(value.clone())
                } else {
                    wrong()
                }
            }
            (ParamType::StrList { choices }, Value::Array(items)) => {
                for item in items {
                    match item {
                        Value::String(s) if choices.is_empty() || choices.contains(&s.as_str()) => {
                        }
                        _ => return wrong(),
                    }
                }
                Ok(value.clone())
            }
            (ParamType::Table, Value::Table(t)) => {
                if t.values()
                    .all(|v| !matches!(v, Value::Table(_) | Value::Array(_)))
                {
                    Ok(value.clone())
                } else {
                    Err("expected a table of scalar values (strings, numbers, booleans)".into())
                }
            }
            _ => wrong(),
        }
    }
}

fn quoted(choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One declared parameter of a stage kind.
#[derive(Debug, Clone)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    pub default: Value,
    pub doc: &'static str,
}

impl ParamSpec {
    pub fn new(
        name: &'static str,
        ty: ParamType,
        default: impl Into<Value>,
        doc: &'static str,
    ) -> Self {
        ParamSpec {
            name,
            ty,
            default: default.into(),
            doc,
        }
    }
}

/// The effective parameter values of one stage: every declared parameter,
/// defaults filled in, types checked. Getters panic only on a programming
/// error (asking for an undeclared name or the wrong type).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Params {
    values: BTreeMap<String, Value>,
}

impl Params {
    pub fn new(values: BTreeMap<String, Value>) -> Self {
        Params { values }
    }
    pub fn values(&self) -> &BTreeMap<String, Value> {
        &self.values
    }
    pub fn get(&self, name: &str) -> &Value {
        self.values
            .get(name)
            .unwrap_or_else(|| panic!("parameter `{name}` is not declared by this stage kind"))
    }
    pub fn bool(&self, name: &str) -> bool {
        self.get(name)
            .as_bool()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a bool"))
    }
    pub fn int(&self, name: &str) -> i64 {
        self.get(name)
            .as_integer()
            .unwrap_or_else(|| panic!("parameter `{name}` is not an integer"))
    }
    pub fn usize(&self, name: &str) -> usize {
        usize::try_from(self.int(name)).unwrap_or_else(|_| panic!("parameter `{name}` is negative"))
    }
    pub fn float(&self, name: &str) -> f64 {
        match self.get(name) {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            _ => panic!("parameter `{name}` is not a number"),
        }
    }
    pub fn str(&self, name: &str) -> &str {
        self.get(name)
            .as_str()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a string"))
    }
    pub fn str_list(&self, name: &str) -> Vec<String> {
        match self.get(name) {
            Value::Array(items) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => panic!("parameter `{name}` is not a list"),
        }
    }
    pub fn table(&self, name: &str) -> &toml::Table {
        self.get(name)
            .as_table()
            .unwrap_or_else(|| panic!("parameter `{name}` is not a table"))
    }
}

/// One assignment to a parameter, from the pipeline file, a variant or
/// `--set`: `key = value`, or `key.entry = value` for one entry of a table
/// parameter (the `command` kind's `params`).
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    pub key: String,
    pub entry: Option<String>,
    pub value: Value,
}

impl Setting {
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> Self {
        Setting {
            key: key.into(),
            entry: None,
            value: value.into(),
        }
    }
}

/// What is wrong with a parameter setting. `setting` is the index of the
/// [`Setting`] the problem is about, so the caller can say where it came from.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamError {
    /// The kind declares no parameter of that name.
    Unknown { setting: usize },
    /// The value does not have the declared type, or `key.entry` was set on
    /// a parameter that is not a table.
    Invalid { setting: usize, message: String },
    /// The values are each fine but do not work together (the kind's `validate`).
    Inconsistent { message: String },
}

impl Params {
    /// The effective parameters of `kind`: its declared defaults, with
    /// `settings` applied in order (a later one wins), each type-checked,
    /// then the kind's cross-parameter checks. Every problem is returned.
    pub fn resolve(kind: &dyn StageKind, settings: &[Setting]) -> Result<Params, Vec<ParamError>> {
        let specs = kind.params();
        let mut values: BTreeMap<String, Value> = specs
            .iter()
            .map(|s| (s.name.to_string(), s.default.clone()))
            .collect();
        let mut errors = Vec::new();
        for (i, setting) in settings.iter().enumerate() {
            let Some(spec) = specs.iter().find(|s| s.name == setting.key) else {
                errors.push(ParamError::Unknown { setting: i });
                continue;
            };
            let value = match (&setting.entry, &spec.ty) {
                (None, _) => setting.value.clone(),
                (Some(entry), ParamType::Table) => {
                    let mut table = values[&setting.key].as_table().cloned().unwrap_or_default();
                    table.insert(entry.clone(), setting.value.clone());
                    Value::Table(table)
                }
                (Some(entry), ty) => {
                    errors.push(ParamError::Invalid {
                        setting: i,
                        message: format!(
                            "`{}` is {}, it has no entry `{entry}`",
                            setting.key,
                            ty.describe()
                        ),
                    });
                    continue;
                }
            };
            match spec.ty.check(&value) {
                Ok(v) => {
                    values.insert(setting.key.clone(), v);
                }
                Err(message) => errors.push(ParamError::Invalid {
                    setting: i,
                    message,
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let params = Params::new(values);
        kind.validate(&params)
            .map_err(|message| vec![ParamError::Inconsistent { message }])?;
        Ok(params)
    }

    /// [`Params::resolve`] for tests and tools: `(name, value)` pairs, the
    /// first problem as one message.
    pub fn with(kind: &dyn StageKind, overrides: &[(&str, Value)]) -> Result<Params, String> {
        let settings: Vec<Setting> = overrides
            .iter()
            .map(|(k, v)| Setting::new(*k, v.clone()))
            .collect();
        Params::resolve(kind, &settings).map_err(|errors| match &errors[0] {
            ParamError::Unknown { setting } => format!(
                "stage kind `{}` has no parameter `{}`",
                kind.name(),
                settings[*setting].key
            ),
            ParamError::Invalid { setting, message } => {
                format!("`{}`: {message}", settings[*setting].key)
            }
            ParamError::Inconsistent { message } => message.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StageContext, StageError};

    struct Toy;
    impl StageKind for Toy {
        fn name(&self) -> &'static str {
            "toy"
        }
        fn version(&self) -> u32 {
            1
        }
        fn doc(&self) -> &'static str {
            "a toy"
        }
        fn params(&self) -> Vec<ParamSpec> {
            vec![
                ParamSpec::new("lo", ParamType::Int { min: 0, max: 10 }, 1, ""),
                ParamSpec::new("hi", ParamType::Int { min: 0, max: 10 }, 5, ""),
                ParamSpec::new("lr", ParamType::Float { min: 0.0, max: 1.0 }, 0.5, ""),
                ParamSpec::new("env", ParamType::Table, toml::Table::new(), ""),
            ]
        }
        fn validate(&self, p: &Params) -> Result<(), String> {
            if p.int("lo") > p.int("hi") {
                return Err("`lo` must not exceed `hi`".into());
            }
            Ok(())
        }
        fn run(&self, _: &StageContext) -> Result<(), StageError> {
            Ok(())
        }
    }

    #[test]
    fn later_settings_win_and_ints_widen_to_floats() {
        let p = Params::resolve(
            &Toy,
            &[
                Setting::new("hi", 7),
                Setting::new("hi", 8),
                Setting::new("lr", 1),
                Setting {
                    key: "env".into(),
                    entry: Some("A".into()),
                    value: "x".into(),
                },
            ],
        )
        .unwrap();
        assert_eq!(p.int("hi"), 8);
        assert_eq!(p.get("lr"), &Value::Float(1.0));
        assert_eq!(p.table("env")["A"].as_str(), Some("x"));
    }

    #[test]
    fn every_problem_is_returned_with_its_setting() {
        let errors = Params::resolve(
            &Toy,
            &[
                Setting::new("hj", 1),
                Setting::new("lo", 11),
                Setting {
                    key: "lo".into(),
                    entry: Some("x".into()),
                    value: 1.into(),
                },
            ],
        )
        .unwrap_err();
        assert_eq!(errors.len(), 3);
        assert_eq!(errors[0], ParamError::Unknown { setting: 0 });
        assert!(
            matches!(&errors[1], ParamError::Invalid { setting: 1, message } if message.contains("0..=10"))
        );
        let inconsistent = Params::resolve(&Toy, &[Setting::new("lo", 9)]).unwrap_err();
        assert!(matches!(&inconsistent[0], ParamError::Inconsistent { .. }));
        assert!(
            Params::with(&Toy, &[("hj", 1.into())])
                .unwrap_err()
                .contains("no parameter `hj`")
        );
    }
}
