//! Reading `pipeline.toml`: stages, their kinds, dependencies and
//! parameters, and variants, each checked against what the stage kinds
//! declare. Every problem is reported at once, with file, line and key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::DeTable;
use vgmake_api::{InputError, Registry, Setting, Value};

use super::spans::Spans;
use super::{DEFAULT_VARIANT, Executor, MAX_NAME_LEN, Override, Pipeline, StageDecl, valid_name};
use crate::diagnostic::{Diagnostic, Diagnostics, Origin};

const TOP_LEVEL_KEYS: &[&str] = &["stages", "variants", "cache", "executors"];
/// Keys of a `[stages.NAME]` table that are not parameters.
pub const STAGE_KEYS: &[&str] = &["kind", "deps", "executor", "slurm"];

impl Pipeline {
    /// Reads and validates `path`. Every problem found is reported at once.
    pub fn load(path: &Path, kinds: &'static Registry) -> Result<Pipeline, Diagnostics> {
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
        Self::parse(path, &text, kinds)
    }

    pub fn parse(
        path: &Path,
        text: &str,
        kinds: &'static Registry,
    ) -> Result<Pipeline, Diagnostics> {
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
                    "unknown top-level key (expected `[stages.NAME]`, `[variants.NAME]`, `[cache]` or `[executors.slurm]`)",
                )
                .suggest(key, TOP_LEVEL_KEYS.iter().copied()),
            );
        }

        let mut stages = parse_stages(&root, &spans, kinds, &mut errors);
        check_deps(&mut stages, &spans, &mut errors);
        let variants = parse_variants(&root, &spans, &stages, &mut errors);
        let cache = crate::remote::config::parse(&root, &spans, &mut errors);
        let slurm = parse_executors(&root, &spans, &mut errors);
        if errors.is_empty() {
            let graph = crate::graph::StageGraph::new(
                stages.iter().map(|s| (s.name.as_str(), s.deps.as_slice())),
            );
            if let Err(cycle) = graph.check_acyclic() {
                let origin = spans.origin(&["stages", &cycle[0], "deps"]);
                errors.push(Diagnostic::new(
                    origin,
                    format!("stages.{}.deps", cycle[0]),
                    format!("dependency cycle: {} -> {}", cycle.join(" -> "), cycle[0]),
                ));
            }
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let index = stages
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        let pipeline = Pipeline {
            path: path.to_path_buf(),
            dir,
            stages,
            variants,
            cache,
            slurm,
            index,
        };
        if errors.is_empty() {
            // Parameters: each stage as the file sets it, and each variant,
            // through the same resolution a build uses.
            pipeline.check_resolves(&mut errors);
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(pipeline)
    }

    fn check_resolves(&self, errors: &mut Vec<Diagnostic>) {
        if let Err(d) = self.resolve(None, &[]) {
            errors.extend(d.0);
            return;
        }
        for name in self.variants.keys() {
            if let Err(d) = self.resolve(Some(name), &[]) {
                errors.extend(
                    d.0.into_iter()
                        .filter(|e| !errors.contains(e))
                        .collect::<Vec<_>>(),
                );
            }
        }
    }
}

fn parse_stages(
    root: &toml::Table,
    spans: &Spans,
    kinds: &'static Registry,
    errors: &mut Vec<Diagnostic>,
) -> Vec<StageDecl> {
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
                format!(
                    "a stage name may hold only letters, digits, `_` and `-`, at most {MAX_NAME_LEN} of them"
                ),
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
        let Some(kind) = kinds.find(kind_name) else {
            let names = kinds.names();
            let (at, key, message) = if body.contains_key("kind") {
                (
                    here("kind"),
                    format!("stages.{name}.kind"),
                    format!(
                        "unknown stage kind `{kind_name}` (kinds: {})",
                        names.join(", ")
                    ),
                )
            } else {
                (
                    origin,
                    format!("stages.{name}"),
                    format!(
                        "no stage kind is named `{kind_name}`; set `kind = \"...\"` (kinds: {})",
                        names.join(", ")
                    ),
                )
            };
            errors.push(Diagnostic::new(at, key, message).suggest(kind_name, names));
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
        let settings = body
            .iter()
            .filter(|(k, _)| !STAGE_KEYS.contains(&k.as_str()))
            .map(|(key, value)| Override {
                stage: name.clone(),
                setting: Setting::new(key.clone(), value.clone()),
                origin: here(key),
                path: format!("stages.{name}.{key}"),
            })
            .collect();
        let executor = match body.get("executor") {
            None => Executor::Local,
            Some(v) => match v.as_str().and_then(Executor::parse) {
                Some(e) => e,
                None => {
                    errors.push(
                        Diagnostic::new(
                            here("executor"),
                            format!("stages.{name}.executor"),
                            format!(
                                "unknown executor {v} (executors: {})",
                                Executor::NAMES.join(", ")
                            ),
                        )
                        .suggest(v.as_str().unwrap_or(""), Executor::NAMES.iter().copied()),
                    );
                    Executor::Local
                }
            },
        };
        let slurm = match body.get("slurm") {
            None => Default::default(),
            Some(Value::Table(t)) => {
                crate::slurm::options::parse(t, &spans, &["stages", name, "slurm"], errors)
            }
            Some(_) => {
                errors.push(Diagnostic::new(
                    here("slurm"),
                    format!("stages.{name}.slurm"),
                    "expected a table of Slurm settings, e.g. `slurm = { gres = \"gpu:1\" }`",
                ));
                Default::default()
            }
        };
        stages.push(StageDecl {
            name: name.clone(),
            kind,
            slots: vec![None; deps.len()],
            deps,
            settings,
            origin: spans.origin(&["stages", name]),
            executor,
            slurm,
        });
    }
    stages
}

/// The `[executors]` table: only `[executors.slurm]` so far (local needs no settings).
fn parse_executors(
    root: &toml::Table,
    spans: &Spans,
    errors: &mut Vec<Diagnostic>,
) -> crate::slurm::SlurmOptions {
    let Some(value) = root.get("executors") else {
        return Default::default();
    };
    let Some(table) = value.as_table() else {
        errors.push(Diagnostic::new(
            spans.origin(&["executors"]),
            "executors",
            "must be a table (`[executors.slurm]`)",
        ));
        return Default::default();
    };
    let mut options = Default::default();
    for (name, value) in table {
        match (name.as_str(), value.as_table()) {
            ("slurm", Some(t)) => {
                options = crate::slurm::options::parse(t, spans, &["executors", "slurm"], errors)
            }
            ("slurm", None) => errors.push(Diagnostic::new(
                spans.origin(&["executors", name]),
                "executors.slurm",
                "must be a table (`[executors.slurm]`)",
            )),
            _ => errors.push(
                Diagnostic::new(
                    spans.origin(&["executors", name]),
                    format!("executors.{name}"),
                    "unknown executor (only `[executors.slurm]` takes settings)",
                )
                .suggest(name, ["slurm"]),
            ),
        }
    }
    options
}

/// Dependencies name declared stages, once each, and fit what the stage's
/// kind reads from them.
fn check_deps(stages: &mut [StageDecl], spans: &Spans, errors: &mut Vec<Diagnostic>) {
    let names: Vec<String> = stages.iter().map(|s| s.name.clone()).collect();
    let declared: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    let kind_of: BTreeMap<String, &'static str> = stages
        .iter()
        .map(|s| (s.name.clone(), s.kind.name()))
        .collect();
    for stage in stages.iter_mut() {
        let at = spans.origin(&["stages", &stage.name, "deps"]);
        let key = format!("stages.{}.deps", stage.name);
        let mut known = true;
        for (i, dep) in stage.deps.iter().enumerate() {
            if !declared.contains(dep.as_str()) {
                known = false;
                errors.push(
                    Diagnostic::new(
                        at.clone(),
                        format!("{key}[{i}]"),
                        format!("unknown stage `{dep}`"),
                    )
                    .suggest(dep, names.iter().map(String::as_str)),
                );
            } else if stage.deps[..i].contains(dep) {
                known = false;
                errors.push(Diagnostic::new(
                    at.clone(),
                    key.clone(),
                    format!("`{dep}` is listed twice"),
                ));
            }
        }
        if !known {
            continue;
        }
        let dep_kinds: Vec<&str> = stage.deps.iter().map(|d| kind_of[d]).collect();
        match stage.kind.inputs().assign(&dep_kinds) {
            Ok(slots) => stage.slots = slots,
            Err(problems) => {
                for problem in problems {
                    errors.push(Diagnostic::new(
                        at.clone(),
                        key.clone(),
                        shape_message(stage, &problem, &kind_of),
                    ));
                }
            }
        }
    }
}

/// What is wrong with a stage's dependencies, and what would fit.
fn shape_message(
    stage: &StageDecl,
    problem: &InputError,
    kind_of: &BTreeMap<String, &'static str>,
) -> String {
    let kind = stage.kind.name();
    let one_of = |kinds: &[&str]| {
        kinds
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match problem {
        InputError::Missing { slot } => {
            let candidates: Vec<&str> = kind_of
                .iter()
                .filter(|(name, k)| slot.kinds.contains(k) && **name != stage.name)
                .map(|(name, _)| name.as_str())
                .collect();
            let hint = match candidates.as_slice() {
                [] => format!("; add a stage of kind {}", one_of(slot.kinds)),
                some => format!("; add {} to `deps`", one_of(some)),
            };
            format!(
                "stage kind `{kind}` reads {} from a stage of kind {}, and none is in `deps`{hint}",
                slot.what,
                one_of(slot.kinds)
            )
        }
        InputError::Unexpected {
            dep,
            kind: dep_kind,
        } => {
            let dep_name = &stage.deps[*dep];
            match stage.kind.inputs() {
                vgmake_api::Inputs::Slots([]) => format!(
                    "stage kind `{kind}` is a source and takes no dependencies, but lists `{dep_name}`"
                ),
                vgmake_api::Inputs::Slots(slots) => format!(
                    "`{dep_name}` (kind `{dep_kind}`) is not an input of stage kind `{kind}`, which reads {}",
                    slots
                        .iter()
                        .map(|s| format!("{} from {}", s.what, one_of(s.kinds)))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
                vgmake_api::Inputs::Any => unreachable!("any dependency fits Inputs::Any"),
            }
        }
    }
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
                format!(
                    "a variant name may hold only letters, digits, `_` and `-`, at most {MAX_NAME_LEN} of them, and may not be `default`"
                ),
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
            if !stage_names.contains(&stage.as_str()) {
                errors.push(
                    Diagnostic::new(
                        at,
                        format!("variants.{variant}.{stage}"),
                        format!("unknown stage `{stage}`"),
                    )
                    .suggest(stage, stage_names.iter().copied()),
                );
                continue;
            }
            let Some(params) = params.as_table() else {
                errors.push(Diagnostic::new(
                    at,
                    format!("variants.{variant}.{stage}"),
                    "expected `stage.key = value` (a variant overrides parameters only)",
                ));
                continue;
            };
            for (key, value) in params {
                overrides.push(Override {
                    stage: stage.clone(),
                    setting: Setting::new(key.clone(), value.clone()),
                    origin: spans.origin(&["variants", variant, stage, key]),
                    path: format!("variants.{variant}.{stage}.{key}"),
                });
            }
        }
        variants.insert(variant.clone(), overrides);
    }
    variants
}
