//! The stage graph (petgraph): cycle checks, target selection and a
//! deterministic topological order.

use std::collections::{BTreeSet, HashMap};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};

use crate::diagnostic::Diagnostic;
use crate::error::Error;

/// Edges run from a dependency to the stage that needs it.
pub struct StageGraph {
    graph: DiGraph<String, ()>,
    index: HashMap<String, NodeIndex>,
}

impl StageGraph {
    pub fn new<'a>(stages: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let stages: Vec<(&str, &[String])> = stages.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = HashMap::new();
        for (name, _) in &stages {
            index.insert(name.to_string(), graph.add_node(name.to_string()));
        }
        for (name, deps) in &stages {
            for dep in deps.iter() {
                if let Some(&j) = index.get(dep.as_str()) {
                    graph.add_edge(j, index[*name], ());
                }
            }
        }
        StageGraph { graph, index }
    }

    fn node(&self, name: &str) -> Option<NodeIndex> {
        self.index.get(name).copied()
    }

    /// The targets and everything they depend on; every stage when `targets`
    /// is empty. An unknown target is an error with a suggestion.
    pub fn select(&self, targets: &[String]) -> Result<BTreeSet<String>, Error> {
        if targets.is_empty() {
            return Ok(self.graph.node_weights().cloned().collect());
        }
        let mut selected = BTreeSet::new();
        for target in targets {
            let Some(start) = self.node(target) else {
                let names: Vec<&str> = self.graph.node_weights().map(String::as_str).collect();
                return Err(Error::Target(
                    Diagnostic::new(
                        crate::diagnostic::Origin::CommandLine(target.clone()),
                        "",
                        format!(
                            "no stage is named `{target}` (stages: {})",
                            names.join(", ")
                        ),
                    )
                    .suggest(target, names.iter().copied()),
                ));
            };
            let reversed = Reversed(&self.graph);
            let mut dfs = Dfs::new(reversed, start);
            while let Some(n) = dfs.next(reversed) {
                selected.insert(self.graph[n].clone());
            }
        }
        Ok(selected)
    }

    /// The targets and what they need, dependencies first: the one walk that
    /// `build`, `status`, `why` and `--dry-run` share.
    pub fn selection(&self, targets: &[String]) -> Result<Vec<String>, Error> {
        let selected = self.select(targets)?;
        Ok(self
            .topological_order()
            .into_iter()
            .filter(|s| selected.contains(s))
            .collect())
    }

    /// Every stage, dependencies first; ties broken by name, so the order is
    /// the same on every run.
    pub fn topological_order(&self) -> Vec<String> {
        let mut indegree: Vec<usize> = self
            .graph
            .node_indices()
            .map(|n| self.graph.neighbors_directed(n, petgraph::Incoming).count())
            .collect();
        let mut ready: BTreeSet<(String, usize)> = self
            .graph
            .node_indices()
            .filter(|n| indegree[n.index()] == 0)
            .map(|n| (self.graph[n].clone(), n.index()))
            .collect();
        let mut order = Vec::new();
        while let Some((name, i)) = ready.pop_first() {
            order.push(name);
            for next in self.graph.neighbors(NodeIndex::new(i)) {
                indegree[next.index()] -= 1;
                if indegree[next.index()] == 0 {
                    ready.insert((self.graph[next].clone(), next.index()));
                }
            }
        }
        order
    }

    /// Edges as (dependency, stage) name pairs, in topological order.
    pub fn edges(&self) -> Vec<(String, String)> {
        let order = self.topological_order();
        let mut edges: Vec<(String, String)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].clone(), self.graph[b].clone()))
            .collect();
        let rank = |n: &str| order.iter().position(|o| o == n);
        edges.sort_by_key(|(a, b)| (rank(b), rank(a)));
        edges
    }
}

impl StageGraph {
    /// `Err(stages on a cycle, in dependency order)` when the declared deps loop.
    pub fn check_acyclic(&self) -> Result<(), Vec<String>> {
        for scc in tarjan_scc(&self.graph) {
            let self_loop = scc.len() == 1 && self.graph.contains_edge(scc[0], scc[0]);
            if scc.len() > 1 || self_loop {
                return Err(cycle_path(&self.graph, &scc));
            }
        }
        Ok(())
    }
}

/// Walks a cycle inside one strongly connected component, starting at its
/// smallest name.
fn cycle_path(graph: &DiGraph<String, ()>, scc: &[NodeIndex]) -> Vec<String> {
    let start = *scc.iter().min_by_key(|n| &graph[**n]).unwrap();
    let mut path = vec![start];
    let mut current = start;
    loop {
        // Follow the edge to the smallest-named member not yet visited; close
        // the loop as soon as the start is reachable.
        let mut next: Vec<NodeIndex> = graph
            .neighbors(current)
            .filter(|n| scc.contains(n))
            .collect();
        if next.contains(&start)
            && (path.len() > 1 || current == start && graph.contains_edge(start, start))
        {
            break;
        }
        next.retain(|n| !path.contains(n));
        next.sort_by_key(|n| graph[*n].clone());
        match next.first() {
            Some(&n) => {
                path.push(n);
                current = n;
            }
            None => break,
        }
    }
    path.into_iter().map(|n| graph[n].clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(spec: &[(&str, &[&str])]) -> StageGraph {
        let owned: Vec<(String, Vec<String>)> = spec
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect();
        StageGraph::new(
            owned
                .iter()
                .map(|(n, d)| (n.as_str(), d.as_slice()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn order_and_selection() {
        let g = graph(&[
            ("sample", &["train", "vocab"]),
            ("train", &["vocab"]),
            ("vocab", &["scrape"]),
            ("scrape", &[]),
            ("eval", &["vocab"]),
        ]);
        assert_eq!(
            g.topological_order(),
            ["scrape", "vocab", "eval", "train", "sample"]
        );
        let sel = g.select(&["train".into()]).unwrap();
        assert_eq!(
            sel.into_iter().collect::<Vec<_>>(),
            ["scrape", "train", "vocab"]
        );
        assert!(
            g.select(&["trian".into()])
                .unwrap_err()
                .to_string()
                .contains("did you mean `train`?")
        );
    }
}
