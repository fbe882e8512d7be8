//! `pipeline.toml`: parsing, validation against the stage kinds' declared
//! parameters, variants and `--set` overrides.
//!
//! Values come from `toml::Table`; the positions of keys come from a second,
//! span-keeping parse (`toml::de::DeTable`), so every message can name the
//! file, line and key.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use vgmake_stages::api::{ParamSpec, ParamType, Params, StageKind, Value};
use vgmake_stages::registry;

use crate::diagnostic::{Diagnostic, Diagnostics, Origin};

/// A parsed, validated pipeline file.
pub struct Pipeline {
    pub path: PathBuf,
    /// The folder holding the file: relative paths in parameters start here.
    pub dir: PathBuf,
    pub stages: Vec<StageDecl>,
    pub variants: BTreeMap<String, Vec<Override>>,
}

/// One `[stages.NAME]` table.
pub struct StageDecl {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub deps: Vec<String>,
    /// Parameters set in the file (defaults are filled in by `resolve`).
    pub params: BTreeMap<String, (Value, Origin)>,
    pub origin: Origin,
}

/// A parameter override from a variant or `--set`.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub stage: String,
    pub key: String,
    /// For table parameters (`command`'s `params`): one entry of the table.
    pub subkey: Option<String>,
    pub value: Value,
    pub origin: Origin,
}

/// A stage with its effective parameters, for one variant and set of overrides.
#[derive(Clone)]
pub struct ResolvedStage {
    pub name: String,
    pub kind: &'static dyn StageKind,
    pub deps: Vec<String>,
    pub params: Params,
}

/// The pipeline as one build sees it.
pub struct Resolved {
    /// `default` when no variant is applied.
    pub variant: String,
    pub stages: Vec<ResolvedStage>,
}

impl Resolved {
    pub fn stage(&self, name: &str) -> Option<&ResolvedStage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

pub const DEFAULT_VARIANT: &str = "default";
const TOP_LEVEL_KEYS: &[&str] = &["stages", "variants"];
const STAGE_KEYS: &[&str] = &["kind", "deps"];

/// Key positions of a TOML document, by key path.
struct Spans<'a> {
    path: &'a Path,
    text: &'a str,
    starts: HashMap<Vec<String>, usize>,
}

impl<'a> Spans<'a> {
    fn new(path: &'a Path, text: &'a str, root: &DeTable) -> Self {
        let mut starts = HashMap::new();
        index_spans(root, &mut Vec::new(), &mut starts);
        Spans { path, text, starts }
    }

    /// The origin of the key at `keys`, or of its nearest ancestor.
    fn origin(&self, keys: &[&str]) -> Origin {
        let mut keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        loop {
            if let Some(&start) = self.starts.get(&keys) {
                return Origin::in_file(self.path, self.text, start);
            }
            if keys.pop().is_none() {
                return Origin::in_file(self.path, self.text, 0);
            }
        }
    }
}

fn index_spans(table: &DeTable, prefix: &mut Vec<String>, out: &mut HashMap<Vec<String>, usize>) {
    for (key, value) in table.iter() {
        prefix.push(key.get_ref().to_string());
        out.entry(prefix.clone()).or_insert(key.span().start);
        if let DeValue::Table(inner) = value.get_ref() {
            index_spans(inner, prefix, out);
        }
        prefix.pop();
    }
}

impl Pipeline {
    /// Reads and validates `path`. Every problem found is reported at once.
    pub fn load(path: &Path) -> Result<Pipeline, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                Origin::File {
                    path: path.to_path_buf(),
                    line: 0,
                    column: 0,
                },
                "",
                format!("cannot read the pipeline file: {e}"),
            )])
        })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Pipeline, Diagnostics> {
        let syntax_error = |offset: usize, message: String| {
            Diagnostics(vec![Diagnostic::new(
                Origin::in_file(path, text, offset),
                "",
                message,
            )])
        };
        let spanned = DeTable::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            syntax_error(offset, format!("invalid TOML: {}", e.message().trim()))
        })?;
        let root: toml::Table = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            syntax_error(offset, format!("invalid TOML: {}", e.message().trim()))
        })?;
        let spans = Spans::new(path, text, spanned.get_ref());
        let mut errors = Vec::new();

        for key in root
            .keys()
            .filter(|k| !TOP_LEVEL_KEYS.contains(&k.as_str()))
        {
            errors.push(
                Diagnostic::new(
                    spans.origin(&[key]),
                    key.as_str(),
                    "unknown top-level key (expected `[stages.NAME]` or `[variants.NAME]`)",
                )
                .suggest(key, TOP_LEVEL_KEYS.iter().copied()),
            );
        }

        let stages = parse_stages(&root, &spans, &mut errors);
        let stage_names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
        for stage in &stages {
            for (i, dep) in stage.deps.iter().enumerate() {
                if !stage_names.contains(&dep.as_str()) {
                    let origin = spans.origin(&["stages", &stage.name, "deps"]);
                    errors.push(
                        Diagnostic::new(
                            origin,
                            format!("stages.{}.deps[{i}]", stage.name),
                            format!("unknown stage `{dep}`"),
                        )
                        .suggest(dep, stage_names.iter().copied()),
                    );
                } else if stage.deps[..i].contains(dep) {
                    let origin = spans.origin(&["stages", &stage.name, "deps"]);
                    errors.push(Diagnostic::new(
                        origin,
                        format!("stages.{}.deps", stage.name),
                        format!("`{dep}` is listed twice"),
                    ));
                }
            }
        }

        let variants = parse_variants(&root, &spans, &stages, &mut errors);
        if errors.is_empty() {
            if let Err(cycle) = crate::graph::check_acyclic(&stages) {
                let origin = spans.origin(&["stages", &cycle[0], "deps"]);
                errors.push(Diagnostic::new(
                    origin,
                    format!("stages.{}.deps", cycle[0]),
                    format!("dependency cycle: {} -> {}", cycle.join(" -> "), cycle[0]),
                ));
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Ok(Pipeline {
            path: path.to_path_buf(),
            dir,
            stages,
            variants,
        })
    }

    pub fn stage(&self, name: &str) -> Option<&StageDecl> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The effective parameters of every stage under `variant` (None = the
    /// default) and `sets`, each checked against its declaration.
    pub fn resolve(
        &self,
        variant: Option<&str>,
        sets: &[Override],
    ) -> Result<Resolved, Diagnostics> {
        let mut overrides: Vec<&Override> = Vec::new();
        if let Some(name) = variant.filter(|v| *v != DEFAULT_VARIANT) {
            let Some(list) = self.variants.get(name) else {
                let names: Vec<&str> = self.variants.keys().map(String::as_str).collect();
                let known = if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                };
                return Err(Diagnostics(vec![
                    Diagnostic::new(
                        Origin::CommandLine(format!("--variant {name}")),
                        "",
                        format!(
                            "{} declares no variant `{name}` (variants: {known})",
                            self.path.display()
                        ),
                    )
                    .suggest(name, names.iter().copied()),
                ]));
            };
            overrides.extend(list);
        }
        overrides.extend(sets);

        let mut errors = Vec::new();
        let mut stages = Vec::new();
        for decl in &self.stages {
            let specs = decl.kind.params();
            let mut values: BTreeMap<String, Value> = specs
                .iter()
                .map(|s| (s.name.to_string(), s.default.clone()))
                .collect();
            for (key, (value, _)) in &decl.params {
                values.insert(key.clone(), value.clone());
            }
            for o in overrides.iter().filter(|o| o.stage == decl.name) {
                let Some(spec) = specs.iter().find(|s| s.name == o.key) else {
                    errors.push(unknown_param(
                        o.origin.clone(),
                        &decl.name,
                        &o.key,
                        decl.kind,
                        &specs,
                    ));
                    continue;
                };
                let value = match (&o.subkey, &spec.ty) {
                    (None, _) => o.value.clone(),
                    (Some(sub), ParamType::Table) => {
                        let mut table = values[&o.key].as_table().cloned().unwrap_or_default();
                        table.insert(sub.clone(), o.value.clone());
                        Value::Table(table)
                    }
                    (Some(sub), _) => {
                        errors.push(Diagnostic::new(
                            o.origin.clone(),
                            format!("{}.{}.{sub}", decl.name, o.key),
                            format!(
                                "`{}` is {}, it has no entry `{sub}`",
                                o.key,
                                spec.ty.describe()
                            ),
                        ));
                        continue;
                    }
                };
                match spec.ty.check(&value) {
                    Ok(v) => {
                        values.insert(o.key.clone(), v);
                    }
                    Err(msg) => errors.push(Diagnostic::new(
                        o.origin.clone(),
                        format!("{}.{}", decl.name, o.key),
                        msg,
                    )),
                }
            }
            let params = Params::new(values);
            if let Err(msg) = decl.kind.validate(&params) {
                errors.push(Diagnostic::new(
                    decl.origin.clone(),
                    format!("stages.{}", decl.name),
                    msg,
                ));
            }
            stages.push(ResolvedStage {
                name: decl.name.clone(),
                kind: decl.kind,
                deps: decl.deps.clone(),
                params,
            });
        }
        for o in &overrides {
            if self.stage(&o.stage).is_none() {
                let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
                errors.push(
                    Diagnostic::new(
                        o.origin.clone(),
                        format!("{}.{}", o.stage, o.key),
                        format!("unknown stage `{}`", o.stage),
                    )
                    .suggest(&o.stage, names),
                );
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Resolved {
            variant: variant.unwrap_or(DEFAULT_VARIANT).to_string(),
            stages,
        })
    }
}

fn unknown_param(
    origin: Origin,
    stage: &str,
    key: &str,
    kind: &dyn StageKind,
    specs: &[ParamSpec],
) -> Diagnostic {
    let mut names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    names.extend(STAGE_KEYS);
    Diagnostic::new(
        origin,
        format!("stages.{stage}.{key}"),
        format!(
            "unknown parameter of stage kind `{}` (`vgmake params {}` lists them)",
            kind.name(),
            kind.name()
        ),
    )
    .suggest(key, names)
}

fn parse_stages(root: &toml::Table, spans: &Spans, errors: &mut Vec<Diagnostic>) -> Vec<StageDecl> {
    let Some(stages_value) = root.get("stages") else {
        errors.push(Diagnostic::new(
            spans.origin(&[]),
            "stages",
            "the pipeline declares no stages (add a `[stages.NAME]` table)",
        ));
        return Vec::new();
    };
    let Some(table) = stages_value.as_table() else {
        errors.push(Diagnostic::new(
            spans.origin(&["stages"]),
            "stages",
            "expected a table of `[stages.NAME]` tables",
        ));
        return Vec::new();
    };
    if table.is_empty() {
        errors.push(Diagnostic::new(
            spans.origin(&["stages"]),
            "stages",
            "the pipeline declares no stages",
        ));
    }
    let mut stages = Vec::new();
    for (name, value) in table {
        let here = |key: &str| spans.origin(&["stages", name, key]);
        let origin = spans.origin(&["stages", name]);
        if !valid_name(name) {
            errors.push(Diagnostic::new(
                origin.clone(),
                format!("stages.{name}"),
                "a stage name may hold only letters, digits, `_` and `-`",
            ));
        }
        let Some(body) = value.as_table() else {
            errors.push(Diagnostic::new(
                origin,
                format!("stages.{name}"),
                "expected a table (`[stages.NAME]`)",
            ));
            continue;
        };
        let kind_name = match body.get("kind") {
            None => name.as_str(),
            Some(Value::String(k)) => k.as_str(),
            Some(other) => {
                errors.push(Diagnostic::new(
                    here("kind"),
                    format!("stages.{name}.kind"),
                    format!("expected a string, found {}", other.type_str()),
                ));
                continue;
            }
        };
        let Some(kind) = registry::find(kind_name) else {
            let (at, key) = if body.contains_key("kind") {
                (here("kind"), "kind")
            } else {
                (origin, "")
            };
            let message = if key.is_empty() {
                format!(
                    "no stage kind is named `{kind_name}`; set `kind = \"...\"` (kinds: {})",
                    registry::names().join(", ")
                )
            } else {
                format!(
                    "unknown stage kind `{kind_name}` (kinds: {})",
                    registry::names().join(", ")
                )
            };
            let key = if key.is_empty() {
                format!("stages.{name}")
            } else {
                format!("stages.{name}.kind")
            };
            errors.push(Diagnostic::new(at, key, message).suggest(kind_name, registry::names()));
            continue;
        };
        let deps = match body.get("deps") {
            None => Vec::new(),
            Some(Value::Array(items)) if items.iter().all(Value::is_str) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(_) => {
                errors.push(Diagnostic::new(
                    here("deps"),
                    format!("stages.{name}.deps"),
                    "expected a list of stage names",
                ));
                Vec::new()
            }
        };
        let specs = kind.params();
        let mut params = BTreeMap::new();
        for (key, value) in body
            .iter()
            .filter(|(k, _)| !STAGE_KEYS.contains(&k.as_str()))
        {
            let at = here(key);
            match specs.iter().find(|s| s.name == key) {
                None => errors.push(unknown_param(at, name, key, kind, &specs)),
                Some(spec) => match spec.ty.check(value) {
                    Ok(v) => {
                        params.insert(key.clone(), (v, at));
                    }
                    Err(msg) => {
                        errors.push(Diagnostic::new(at, format!("stages.{name}.{key}"), msg))
                    }
                },
            }
        }
        stages.push(StageDecl {
            name: name.clone(),
            kind,
            deps,
            params,
            origin: spans.origin(&["stages", name]),
        });
    }
    stages
}

fn parse_variants(
    root: &toml::Table,
    spans: &Spans,
    stages: &[StageDecl],
    errors: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Vec<Override>> {
    let mut variants = BTreeMap::new();
    let Some(value) = root.get("variants") else {
        return variants;
    };
    let Some(table) = value.as_table() else {
        errors.push(Diagnostic::new(
            spans.origin(&["variants"]),
            "variants",
            "expected `[variants.NAME]` tables",
        ));
        return variants;
    };
    let stage_names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    for (variant, body) in table {
        if !valid_name(variant) || variant == DEFAULT_VARIANT {
            errors.push(Diagnostic::new(
                spans.origin(&["variants", variant]),
                format!("variants.{variant}"),
                "a variant name may hold only letters, digits, `_` and `-`, and may not be `default`",
            ));
        }
        let mut overrides = Vec::new();
        let Some(body) = body.as_table() else {
            errors.push(Diagnostic::new(
                spans.origin(&["variants", variant]),
                format!("variants.{variant}"),
                "expected a table of `stage.key = value`",
            ));
            continue;
        };
        for (stage, params) in body {
            let at = spans.origin(&["variants", variant, stage]);
            let Some(decl) = stages.iter().find(|s| &s.name == stage) else {
                errors.push(
                    Diagnostic::new(
                        at,
                        format!("variants.{variant}.{stage}"),
                        format!("unknown stage `{stage}`"),
                    )
                    .suggest(stage, stage_names.iter().copied()),
                );
                continue;
            };
            let Some(params) = params.as_table() else {
                errors.push(Diagnostic::new(
                    at,
                    format!("variants.{variant}.{stage}"),
                    "expected `stage.key = value` (a variant overrides parameters only)",
                ));
                continue;
            };
            let specs = decl.kind.params();
            for (key, value) in params {
                let at = spans.origin(&["variants", variant, stage, key]);
                let Some(spec) = specs.iter().find(|s| s.name == key) else {
                    errors.push(unknown_param(at, stage, key, decl.kind, &specs));
                    continue;
                };
                if let Err(msg) = spec.ty.check(value) {
                    errors.push(Diagnostic::new(
                        at,
                        format!("variants.{variant}.{stage}.{key}"),
                        msg,
                    ));
                    continue;
                }
                overrides.push(Override {
                    stage: stage.clone(),
                    key: key.clone(),
                    subkey: None,
                    value: value.clone(),
                    origin: at,
                });
            }
        }
        variants.insert(variant.clone(), overrides);
    }
    variants
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses `--set stage.key=value` (or `stage.key.entry=value` for a table
/// parameter). The value is read as TOML; a bare word is a string.
pub fn parse_set(arg: &str) -> Result<Override, Diagnostic> {
    let origin = Origin::CommandLine(arg.to_string());
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
    let subkey = parts.next().map(str::to_string);
    Ok(Override {
        stage: stage.to_string(),
        key: key.to_string(),
        subkey,
        value: parse_value(raw.trim()),
        origin,
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

    fn parse(text: &str) -> Result<Pipeline, String> {
        Pipeline::parse(Path::new("pipeline.toml"), text).map_err(|d| d.to_string())
    }

    #[test]
    fn unknown_param_names_line_and_suggests() {
        let err = parse("[stages.scrape]\nsource = \"demo\"\nmax_file = 3\n")
            .err()
            .unwrap();
        assert!(err.contains("pipeline.toml:3:1"), "{err}");
        assert!(err.contains("`stages.scrape.max_file`"), "{err}");
        assert!(err.contains("did you mean `max_files`?"), "{err}");
    }

    #[test]
    fn wrong_type_unknown_dep_and_kind() {
        let err = parse("[stages.scrape]\ndelay_ms = \"fast\"\n[stages.b]\nkind = \"scrap\"\n[stages.c]\nkind = \"scrape\"\ndeps = [\"scrap\"]\n")
            .err()
            .unwrap();
        assert!(
            err.contains("pipeline.toml:2:1: `stages.scrape.delay_ms`: expected an integer"),
            "{err}"
        );
        assert!(
            err.contains("unknown stage kind `scrap`") && err.contains("did you mean `scrape`?"),
            "{err}"
        );
        assert!(err.contains("unknown stage `scrap`"), "{err}");
    }

    #[test]
    fn cycle_names_the_stages() {
        let text = "[stages.a]\nkind = \"scrape\"\ndeps = [\"b\"]\n[stages.b]\nkind = \"scrape\"\ndeps = [\"a\"]\n";
        let err = parse(text).err().unwrap();
        assert!(err.contains("dependency cycle: a -> b -> a"), "{err}");
    }

    #[test]
    fn empty_and_duplicate() {
        assert!(parse("").err().unwrap().contains("declares no stages"));
        let err = parse("[stages.scrape]\n[stages.scrape]\n").err().unwrap();
        assert!(
            err.contains("pipeline.toml:2:") && err.contains("invalid TOML"),
            "{err}"
        );
    }

    #[test]
    fn variants_and_sets_override_in_order() {
        let p = parse("[stages.scrape]\nmax_files = 1\n[variants.more]\nscrape.max_files = 5\n")
            .unwrap();
        let r = p.resolve(None, &[]).unwrap();
        assert_eq!(r.stage("scrape").unwrap().params.int("max_files"), 1);
        let r = p.resolve(Some("more"), &[]).unwrap();
        assert_eq!(r.stage("scrape").unwrap().params.int("max_files"), 5);
        let set = parse_set("scrape.max_files=7").unwrap();
        let r = p.resolve(Some("more"), &[set]).unwrap();
        assert_eq!(r.stage("scrape").unwrap().params.int("max_files"), 7);
        let err = p.resolve(Some("mor"), &[]).err().unwrap().to_string();
        assert!(err.contains("did you mean `more`?"), "{err}");
        let err = p
            .resolve(None, &[parse_set("scrape.max_filez=1").unwrap()])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--set scrape.max_filez=1") && err.contains("did you mean `max_files`?"),
            "{err}"
        );
    }

    #[test]
    fn variant_with_unknown_parameter() {
        let err = parse("[stages.scrape]\n[variants.v]\nscrape.max_filez = 5\n")
            .err()
            .unwrap();
        assert!(
            err.contains("pipeline.toml:3:8") && err.contains("did you mean `max_files`?"),
            "{err}"
        );
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
