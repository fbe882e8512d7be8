//! The effective parameters of every stage for one build: declared
//! defaults, then the stage's table in the file, then the variant, then
//! `--set`, resolved by the stage API's one function ([`Params::resolve`]).

use vgmake_api::{ParamError, Params, StageKind};

use super::parse::STAGE_KEYS;
use super::{DEFAULT_VARIANT, Override, Pipeline, Resolved, ResolvedStage};
use crate::diagnostic::{Diagnostic, Diagnostics, Origin};

impl Pipeline {
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
        let names: Vec<&str> = self.stages.iter().map(|s| s.name.as_str()).collect();
        for o in &overrides {
            if self.stage(&o.stage).is_none() {
                errors.push(
                    Diagnostic::new(
                        o.origin.clone(),
                        o.path.clone(),
                        format!("unknown stage `{}`", o.stage),
                    )
                    .suggest(&o.stage, names.iter().copied()),
                );
            }
        }
        let mut stages = Vec::new();
        for decl in &self.stages {
            let applied: Vec<&Override> = decl
                .settings
                .iter()
                .chain(overrides.iter().copied().filter(|o| o.stage == decl.name))
                .collect();
            let settings: Vec<_> = applied.iter().map(|o| o.setting.clone()).collect();
            match Params::resolve(decl.kind, &settings) {
                Ok(params) => stages.push(ResolvedStage {
                    name: decl.name.clone(),
                    kind: decl.kind,
                    deps: decl.deps.clone(),
                    slots: decl.slots.clone(),
                    params,
                    executor: decl.executor,
                    slurm: self.slurm.merged(&decl.slurm),
                }),
                Err(problems) => {
                    for problem in problems {
                        errors.push(diagnostic(
                            decl.kind,
                            &decl.name,
                            &decl.origin,
                            &applied,
                            problem,
                        ));
                    }
                }
            }
        }
        if !errors.is_empty() {
            return Err(Diagnostics(errors));
        }
        Ok(Resolved::new(
            variant.unwrap_or(DEFAULT_VARIANT).to_string(),
            stages,
        ))
    }
}

/// A parameter problem, pointed at the setting that caused it. A problem
/// across parameters is blamed on the last setting applied to the stage
/// (the command line's, when there is one), else on the stage's table.
fn diagnostic(
    kind: &dyn StageKind,
    stage: &str,
    stage_origin: &Origin,
    applied: &[&Override],
    problem: ParamError,
) -> Diagnostic {
    match problem {
        ParamError::Unknown { setting } => {
            let o = applied[setting];
            let mut names: Vec<&str> = kind.params().iter().map(|s| s.name).collect();
            names.extend(STAGE_KEYS);
            Diagnostic::new(
                o.origin.clone(),
                o.path.clone(),
                format!(
                    "unknown parameter of stage kind `{}` (`vgmake params {}` lists them)",
                    kind.name(),
                    kind.name()
                ),
            )
            .suggest(&o.setting.key, names)
        }
        ParamError::Invalid { setting, message } => {
            let o = applied[setting];
            Diagnostic::new(o.origin.clone(), o.path.clone(), message)
        }
        ParamError::Inconsistent { message } => match applied.last() {
            Some(o) => Diagnostic::new(o.origin.clone(), format!("stages.{stage}"), message),
            None => Diagnostic::new(stage_origin.clone(), format!("stages.{stage}"), message),
        },
    }
}
