//! The command line's say in a build: `--set stage.key=value` (one value,
//! or a comma list that makes a sweep), `--variant NAME` and
//! `--all-variants`, turned into the list of resolved variants to build.

use vgmake_api::{Setting, Value};

use super::{DEFAULT_VARIANT, MAX_NAME_LEN, Override, Pipeline, Resolved};
use crate::diagnostic::{Diagnostic, Diagnostics, Origin};

/// Every variant a command covers.
pub struct BuildVariants {
    /// The variant the command is about (`--variant`, or `default`).
    pub main: Resolved,
    /// Every variant a build covers: `main` alone, each point of a
    /// `--set a=x,y` sweep, or all variants under `--all-variants`.
    pub all: Vec<Resolved>,
    /// Variants `--all-variants` leaves out because a stage of theirs
    /// reaches the network (a 4-hour scrape): built only when named.
    pub left_out: Vec<String>,
}

impl BuildVariants {
    pub fn new(
        pipeline: &Pipeline,
        variant: Option<&str>,
        sets: &[String],
        all_variants: bool,
    ) -> Result<BuildVariants, Diagnostics> {
        // Each --set is one value or a sweep over several.
        let mut fixed = Vec::new();
        let mut sweeps: Vec<(Override, Vec<(String, Value)>)> = Vec::new();
        for arg in sets {
            let o = parse_set(arg).map_err(|d| Diagnostics(vec![d]))?;
            let raw = arg.split_once('=').map(|(_, v)| v).unwrap_or("");
            let values = sweep_values(raw);
            if values.len() > 1 {
                sweeps.push((o, values));
            } else {
                fixed.push(o);
            }
        }
        let main = pipeline.resolve(variant, &fixed)?;
        let mut all = Vec::new();
        let mut left_out = Vec::new();
        if all_variants {
            all.push(pipeline.resolve(None, &fixed)?);
            for name in pipeline.variants.keys() {
                let resolved = pipeline.resolve(Some(name), &fixed)?;
                if resolved
                    .stages
                    .iter()
                    .any(|s| s.kind.needs_network(&s.params))
                {
                    left_out.push(name.clone());
                } else {
                    all.push(resolved);
                }
            }
        } else if sweeps.is_empty() {
            all.push(pipeline.resolve(variant, &fixed)?);
        } else {
            for point in cartesian(&sweeps) {
                let mut sets = fixed.clone();
                let mut name_parts = Vec::new();
                for (o, (text, value)) in sweeps.iter().map(|(o, _)| o).zip(point) {
                    name_parts.push(format!("{}={text}", sweep_key(o, &sweeps)));
                    let mut point = o.clone();
                    point.setting.value = value;
                    sets.push(point);
                }
                let mut r = pipeline.resolve(variant, &sets)?;
                let prefix = variant
                    .filter(|b| *b != DEFAULT_VARIANT)
                    .map(|b| format!("{b}+"))
                    .unwrap_or_default();
                r.variant = file_safe(&format!("{prefix}{}", name_parts.join(",")));
                all.push(r);
            }
        }
        Ok(BuildVariants {
            main,
            all,
            left_out,
        })
    }
}

/// A swept parameter's name in its variant's name: the parameter (or table
/// entry) alone, unless two sweeps share it.
fn sweep_key(o: &Override, sweeps: &[(Override, Vec<(String, Value)>)]) -> String {
    let short = |x: &Override| {
        x.setting
            .entry
            .clone()
            .unwrap_or_else(|| x.setting.key.clone())
    };
    let ambiguous = sweeps
        .iter()
        .filter(|(other, _)| short(other) == short(o))
        .count()
        > 1;
    if ambiguous {
        format!("{}.{}", o.stage, short(o))
    } else {
        short(o)
    }
}

/// A sweep variant's name as it reaches the file system (`out/<variant>/`,
/// `cache/refs/`): characters other than letters, digits and `_-.,=+` become
/// `_`, it never starts with a dot, and a long one is cut and ends in a
/// hash of the whole so that two names stay apart.
pub fn file_safe(name: &str) -> String {
    let mut safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_-.,=+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.starts_with('.') {
        safe.insert(0, '_');
    }
    if safe.len() > MAX_NAME_LEN {
        let hash = blake3::hash(name.as_bytes()).to_hex();
        safe.truncate(MAX_NAME_LEN - 13);
        safe.push('~');
        safe.push_str(&hash[..12]);
    }
    safe
}

/// Every combination of one value per sweep, the first sweep varying slowest.
fn cartesian(sweeps: &[(Override, Vec<(String, Value)>)]) -> Vec<Vec<(String, Value)>> {
    let mut points: Vec<Vec<(String, Value)>> = vec![Vec::new()];
    for (_, values) in sweeps {
        points = points
            .into_iter()
            .flat_map(|p| {
                values.iter().map(move |v| {
                    let mut q = p.clone();
                    q.push(v.clone());
                    q
                })
            })
            .collect();
    }
    points
}

/// Parses `--set stage.key=value` (or `stage.key.entry=value` for a table
/// parameter). The value is read as TOML; a bare word is a string.
pub fn parse_set(arg: &str) -> Result<Override, Diagnostic> {
    let origin = Origin::CommandLine(format!("--set {arg}"));
    let bad = |msg: &str| Diagnostic::new(origin.clone(), "", msg.to_string());
    let (path, raw) = arg
        .split_once('=')
        .ok_or_else(|| bad("expected `stage.key=value`"))?;
    let mut parts = path.trim().splitn(3, '.');
    let (Some(stage), Some(key)) = (parts.next(), parts.next()) else {
        return Err(bad("expected `stage.key=value`"));
    };
    if stage.is_empty() || key.is_empty() {
        return Err(bad("expected `stage.key=value`"));
    }
    Ok(Override {
        stage: stage.to_string(),
        setting: Setting {
            key: key.to_string(),
            entry: parts.next().map(str::to_string),
            value: parse_value(raw.trim()),
        },
        origin,
        path: path.trim().to_string(),
    })
}

/// The values of a sweep, `--set train.lr=1e-3,3e-4`: a value that is not
/// TOML as a whole but whose comma-separated parts are each a value (TOML or
/// a bare word). A single value gives a list of one. Quote a string that
/// holds a comma: `--set scrape.source='"a,b"'`.
pub fn sweep_values(raw: &str) -> Vec<(String, Value)> {
    let raw = raw.trim();
    if toml::from_str::<toml::Table>(&format!("v = {raw}")).is_ok() || !raw.contains(',') {
        return vec![(raw.to_string(), parse_value(raw))];
    }
    raw.split(',')
        .map(|part| (part.trim().to_string(), parse_value(part.trim())))
        .collect()
}

/// A command-line value: TOML if it parses as a value, else a plain string.
pub fn parse_value(raw: &str) -> Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) if t.len() == 1 => t.remove("v").unwrap(),
        _ => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_names_stay_inside_the_project() {
        assert_eq!(file_safe("lr=1e-3,layers=2"), "lr=1e-3,layers=2");
        assert_eq!(file_safe("../../../ESCAPED=1"), "_.._.._.._ESCAPED=1");
        assert_eq!(file_safe(".hidden"), "_.hidden");
        let long = file_safe(&"x".repeat(300));
        assert_eq!(long.len(), MAX_NAME_LEN);
        assert_ne!(long, file_safe(&"x".repeat(301)));
    }

    #[test]
    fn set_values_are_toml_or_bare_strings() {
        assert_eq!(parse_value("4000"), Value::Integer(4000));
        assert_eq!(parse_value("demo"), Value::String("demo".into()));
        assert_eq!(
            parse_value("[\"nes\",\"snes\"]"),
            Value::Array(vec!["nes".into(), "snes".into()])
        );
        assert_eq!(
            parse_value("/data/my midi"),
            Value::String("/data/my midi".into())
        );
    }
}
