//! The steps as a graph: ids used once, every `needs` naming a step of the
//! workflow (not itself), no cycles — checked over every declared step,
//! whether or not it has errors of its own — then a dependency order, and
//! each step's inputs among the steps it needs.

use super::Checker;
use super::step::Declared;
use crate::workflow::{Produces, Step, nearest_in};
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

/// A node of the graph: a step's id, where it is written, what it needs.
struct Node {
    id: String,
    span: Range<usize>,
    needs: Vec<String>,
}

impl Checker<'_> {
    /// Check the graph of `declared` steps; the compiled steps in an order
    /// where each comes after what it needs (stable: file order among
    /// steps that are ready together), when every step compiled and the
    /// graph holds.
    pub(super) fn graph(&mut self, declared: Vec<Declared>) -> Option<Vec<Step>> {
        let before = self.errors.len();
        let ids: BTreeSet<String> = declared
            .iter()
            .filter_map(|d| d.id.as_ref().map(|i| i.to_string()))
            .collect();
        let mut nodes: Vec<Node> = Vec::new();
        let mut seen = BTreeSet::new();
        for d in &declared {
            let Some(id) = &d.id else { continue };
            if !seen.insert(id.to_string()) {
                self.error(d.id_span.clone(), format!("step id `{id}` is used twice"));
                continue;
            }
            let mut needs = Vec::new();
            for (n, span) in &d.needs {
                if !ids.contains(n) {
                    self.error(
                        span.clone(),
                        format!("step `{id}` needs `{n}`, which is not a step of this workflow"),
                    );
                } else if n == id.as_str() {
                    self.error(span.clone(), format!("step `{id}` needs itself"));
                } else {
                    needs.push(n.clone());
                }
            }
            self.id_spans.insert(id.to_string(), d.id_span.clone());
            nodes.push(Node {
                id: id.to_string(),
                span: d.id_span.clone(),
                needs,
            });
        }
        let order = self.order(&nodes);
        let graph_ok = self.errors.len() == before;
        let mut steps: BTreeMap<String, Step> = BTreeMap::new();
        for d in declared {
            match d.step {
                Some(s) => {
                    steps.insert(s.id.to_string(), s);
                }
                // The step reported its own errors.
                None => return None,
            }
        }
        if !graph_ok {
            return None;
        }
        order?
            .into_iter()
            .map(|id| steps.remove(&id))
            .collect::<Option<Vec<Step>>>()
    }

    /// The ids in dependency order; a cycle is an error at its first step.
    fn order(&mut self, nodes: &[Node]) -> Option<Vec<String>> {
        let mut done: BTreeSet<&str> = BTreeSet::new();
        let mut ordered = Vec::new();
        let mut rest: Vec<&Node> = nodes.iter().collect();
        while !rest.is_empty() {
            let (ready, blocked): (Vec<&Node>, Vec<&Node>) = rest
                .into_iter()
                .partition(|n| n.needs.iter().all(|x| done.contains(x.as_str())));
            if ready.is_empty() {
                let cycle = find_cycle(&blocked);
                let span = blocked
                    .iter()
                    .find(|n| n.id == cycle[0])
                    .map_or(0..0, |n| n.span.clone());
                self.error(span, format!("steps form a cycle: {}", cycle.join(" → ")));
                return None;
            }
            for n in &ready {
                done.insert(n.id.as_str());
            }
            ordered.extend(ready.iter().map(|n| n.id.clone()));
            rest = blocked;
        }
        Some(ordered)
    }

    /// Each step has what it consumes among the steps it needs.
    pub(super) fn check_inputs(&mut self, steps: &[Step]) {
        for s in steps {
            if let Some(need) = s.action.requires()
                && nearest_in(steps, &s.id, need).is_none()
            {
                let what = match need {
                    [Produces::Dataset] => "a dataset (a source or split step)",
                    [Produces::Model] => "a trained model (a trainer step)",
                    [Produces::Model, Produces::Artifact] => {
                        "a trained model (a trainer step, or a process step's artifacts)"
                    }
                    [Produces::Registration] => "a registered model (a register step)",
                    _ => "an input",
                };
                let at = self.id_spans.get(s.id.as_str()).cloned().unwrap_or(0..0);
                self.error(
                    at,
                    format!("step `{}` needs {what} among the steps it `needs`", s.id),
                );
            }
        }
    }
}

/// One cycle among steps that can never become ready.
fn find_cycle(blocked: &[&Node]) -> Vec<String> {
    let by_id: BTreeMap<&str, &Node> = blocked.iter().map(|n| (n.id.as_str(), *n)).collect();
    let mut path: Vec<String> = Vec::new();
    let mut current = blocked[0].id.clone();
    loop {
        if let Some(pos) = path.iter().position(|p| *p == current) {
            let mut cycle = path[pos..].to_vec();
            cycle.push(current);
            return cycle;
        }
        path.push(current.clone());
        let node = by_id[current.as_str()];
        // A blocked step has at least one blocked need.
        current = node
            .needs
            .iter()
            .find(|n| by_id.contains_key(n.as_str()))
            .cloned()
            .unwrap_or_else(|| node.id.clone());
    }
}
