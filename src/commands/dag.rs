//! `vgmake dag`: the stage graph as text, Graphviz dot or Mermaid.

use std::process::ExitCode;

use crate::cli::{Common, DagFormat};
use crate::commands::usage_error;
use crate::graph::StageGraph;
use crate::project::Project;

pub fn run(host: &'static crate::Host, common: &Common, format: DagFormat) -> ExitCode {
    let project = match Project::load(host, common) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let stages = &project.resolved.stages;
    let graph = StageGraph::new(stages.iter().map(|s| (s.name.as_str(), s.deps.as_slice())));
    let order = graph.topological_order();
    match format {
        DagFormat::Text => {
            for name in &order {
                let s = project.resolved.stage(name).unwrap();
                let deps = if s.deps.is_empty() {
                    String::new()
                } else {
                    format!(" <- {}", s.deps.join(", "))
                };
                println!("{name} ({}){deps}", s.kind.name());
            }
        }
        DagFormat::Dot => {
            println!("digraph vgmake {{\n  rankdir=LR;\n  node [shape=box];");
            for name in &order {
                let s = project.resolved.stage(name).unwrap();
                println!("  \"{name}\" [label=\"{name}\\n({})\"];", s.kind.name());
            }
            for (a, b) in graph.edges() {
                println!("  \"{a}\" -> \"{b}\";");
            }
            println!("}}");
        }
        DagFormat::Mermaid => {
            println!("graph LR");
            for name in &order {
                let s = project.resolved.stage(name).unwrap();
                println!("  {name}[\"{name} ({})\"]", s.kind.name());
            }
            for (a, b) in graph.edges() {
                println!("  {a} --> {b}");
            }
        }
    }
    ExitCode::SUCCESS
}
